"""Prints bench/results.md: one row per CPU measured by scripts/bench.sh (bench/results-*.json),
the training speed of the default model against PyTorch's best configuration on the same cores,
with the targets beside them. `python3 scripts/bench_summary.py > bench/results.md`
"""
import glob
import json
import os
import statistics

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench")
entries = [json.load(open(p)) for p in sorted(glob.glob(os.path.join(root, "results-*.json")))]
print("# vqvae bench results\n")
print("`scripts/bench.sh` on each CPU the project was measured on; every figure in a row comes from one run on")
print("that machine, PyTorch in the same run. The default model (32x32x3, hidden 128, codebook 512x64), batch")
print("32 per rank, one BLAS thread per rank; images/s are medians. Targets: at least 1.9x PyTorch on one core,")
print("2.0x PyTorch's best configuration on two (one process with two threads, or DDP with two processes),")
print("and on AVX2 an efficiency per core of at least 120% of the measured single-core sgemm.\n")
print("| CPU | date | Swift built for | BLAS kernel | vqvae 1 rank | PyTorch 1 thread | ratio | vqvae 2 ranks | PyTorch best on 2 cores | ratio | efficiency per core, 1 rank | details |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for e in entries:
    ips = e["images_per_second"]
    rounds = lambda cores: (f" (rounds: median {statistics.median(e[f'ratio_{cores}_core_rounds']):.2f})"
                            if e.get(f"ratio_{cores}_core_rounds") else "")
    print(f"| {e['cpu']} | {e['date']} | {e['instruction_set']} | {e['blas']} | {ips['default32-1']:.1f} | "
          f"{e.get('pytorch_best_1_core', float('nan')):.1f} | {e.get('ratio_1_core', float('nan')):.2f}x{rounds(1)} | "
          f"{ips['default32-2']:.1f} | {e.get('pytorch_best_2_core', float('nan')):.1f} | {e.get('ratio_2_core', float('nan')):.2f}x{rounds(2)} | "
          f"{100 * e['efficiency_per_core']['default32-1']:.0f}% | [results-{e['short']}.md](results-{e['short']}.md) |")
notes = [e for e in entries if e.get("note")]
if notes:
    print()
    for e in notes:
        print(f"- {e['short']}: {e['note']}")
held = [json.load(open(p)) for p in sorted(glob.glob(os.path.join(root, "instruction-set-*.json")))]
if held:
    print("\nOn AVX-512 machines, the AVX2 comparison as well (`scripts/isa_bench.sh`): our `haswell` build with")
    print("OpenBLAS's Haswell kernels against PyTorch held to AVX2, one core, alternating.\n")
    print("| CPU | date | vqvae (AVX2) images/s | PyTorch (AVX2) images/s | ratio | efficiency per core | details |")
    print("|---|---|---|---|---|---|---|")
    for e in held:
        print(f"| {e['cpu']} | {e['date']} | {e['vqvae_avx2']:.1f} | {e['pytorch_avx2']:.1f} | {e['ratio']:.2f}x "
              f"(rounds: median {statistics.median(e['ratio_rounds']):.2f}) | {100 * e['efficiency_per_core']:.0f}% | "
              f"[instruction-set-{e['short']}.md](instruction-set-{e['short']}.md) |")
print("\nHow the Swift code's instruction set changes these figures: [instruction-set.md](instruction-set.md).")
