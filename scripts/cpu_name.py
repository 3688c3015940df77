"""Names this machine's CPU for benchmark reports: `python3 scripts/cpu_name.py` prints a short name
for file names (zen3, zen4, zen5, or family-F-model-M), then a tab, then the description every
report puts beside its figures: model name, family and model, vector instruction set, logical CPUs.
"""
import os
import platform


def describe():
    info = {}
    for line in open("/proc/cpuinfo"):
        if ":" in line:
            key, value = (part.strip() for part in line.split(":", 1))
            info.setdefault(key, value)
    flags = set(info.get("flags", info.get("Features", "")).split())
    isa = ("AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else
           "SVE" if "sve" in flags else "NEON" if "asimd" in flags else "SSE/AVX")
    family, model = info.get("cpu family", "?"), info.get("model", "?")
    short = f"family-{family}-model-{model}"
    if "AMD" in info.get("vendor_id", "") and family.isdigit() and model.isdigit():
        f, m = int(family), int(model)
        if f == 25:
            short = "zen3" if m < 0x10 or 0x20 <= m < 0x60 else "zen4"
        elif f == 26:
            short = "zen5"
    name = info.get("model name", platform.processor() or platform.machine())
    return short, f"{name} (family {family} model {model}, {isa}), {os.cpu_count()} logical CPUs"


if __name__ == "__main__":
    print("\t".join(describe()))
