"""Runs a script as `python3 SCRIPT ARGS...` would, but with `torch` impossible to import, so that
tests see what a user without PyTorch sees, whether or not this machine has it.

    python3 Tests/Scripts/run_with_torch_hidden.py scripts/export_pytorch.py --help
"""
import importlib.abc
import runpy
import sys


class HideTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named '{name}'", name=name)
        return None


sys.meta_path.insert(0, HideTorch())
sys.modules.pop("torch", None)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
