"""Reads a training run's TensorBoard event files with TensorBoard's own loader and prints, as JSON,
every scalar tag's (step, value) pairs: `python3 read_tensorboard.py OUT`. TensorBoard applies the
run's SessionLog START events (a resumed run's restart) as its viewer does. Needs `tensorboard`
(scripts/test.sh installs it).
"""
import json
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

accumulator = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0})
accumulator.Reload()
print(json.dumps({tag: [[event.step, event.value] for event in accumulator.Scalars(tag)]
                  for tag in accumulator.Tags()["scalars"]}, sort_keys=True))
