#!/usr/bin/env bash
# Compiles what can be compiled for aarch64 (Graviton, Grace) on this x86-64 machine, as far as the
# x86-64 Swift toolchain allows: the targets Model (every numeric kernel, with VECTOR_FMA as an
# aarch64 build sets it), Dist and Codec, and the C target CPUCheck, to aarch64 object code, release
# optimisation, against Debian's aarch64 glibc headers (libc6-dev-arm64-cross). The toolchain ships
# the standard library for x86-64 only, so its textual interfaces (.swiftinterface) are rebuilt for
# aarch64 with the x86-only Float80 and CLongDouble declarations left out. Data, Training and the
# launcher import Foundation, which ships without an interface: they, linking, and the tests need a
# real aarch64 toolchain and are not checked here. Prints each object file and the count of NEON
# fused multiply-adds in Model's.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ -d /usr/aarch64-linux-gnu/include ] || {
    sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq libc6-dev-arm64-cross linux-libc-dev-arm64-cross >/dev/null
}
bash scripts/install_dependencies.sh >/dev/null
swift_bin=$(dirname "$(readlink -f "$(command -v swiftc)")")
lib=$(readlink -f "$swift_bin/../lib")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
res=$work/resource sysroot=$work/sysroot
mkdir -p "$res" "$sysroot/usr"
cp -a "$lib/swift/." "$res/"
ln -sfn "$(readlink -f "$lib/swift/clang")" "$res/clang"
ln -sfn /usr/aarch64-linux-gnu/include "$sysroot/usr/include"
ln -sfn /usr/aarch64-linux-gnu/lib "$sysroot/usr/lib"
mkdir -p "$res/linux/aarch64"
cp "$res/linux/x86_64/glibc.modulemap" "$res/linux/x86_64/SwiftGlibc.h" "$res/linux/aarch64/"
for module in "$res"/linux/*.swiftmodule; do
    interface=$module/x86_64-unknown-linux-gnu.swiftinterface
    [ -f "$interface" ] || continue
    python3 - "$interface" > "$module/aarch64-unknown-linux-gnu.swiftinterface" <<'PY'
import re, sys
text = open(sys.argv[1]).read().replace("x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu")
# Float literals are 64-bit where there is no Float80.
text = text.replace("public typealias _MaxBuiltinFloatType = Builtin.FPIEEE80", "public typealias _MaxBuiltinFloatType = Builtin.FPIEEE64")
text = re.sub(r"init\(_builtinFloatLiteral value: Builtin\.FPIEEE80\) \{(\s*)self = Float16\(Float80\(value\)\)",
              r"init(_builtinFloatLiteral value: Builtin.FPIEEE64) {\1self = Float16(Double(value))", text)
text = re.sub(r"init\(_builtinFloatLiteral value: Builtin\.FPIEEE80\) \{(\s*)self = Float\(Builtin\.fptrunc_FPIEEE80_FPIEEE32\(value\)\)",
              r"init(_builtinFloatLiteral value: Builtin.FPIEEE64) {\1self = Float(Builtin.fptrunc_FPIEEE64_FPIEEE32(value))", text)
text = re.sub(r"init\(_builtinFloatLiteral value: Builtin\.FPIEEE80\) \{(\s*)self = Double\(Builtin\.fptrunc_FPIEEE80_FPIEEE64\(value\)\)",
              r"init(_builtinFloatLiteral value: Builtin.FPIEEE64) {\1self = Double(value)", text)
lines = text.split("\n")
bad = re.compile(r"Float80|CLongDouble|_stdlib_remainderl|_stdlib_squareRootl|lgammal|FPIEEE80")
attribute = re.compile(r"^(@[\w.]+(\(.*\))?\s*)+$")
def braces(line):
    code = re.sub(r'"(\\.|[^"\\])*"', '""', line).split("//")[0]
    return code.count("{") - code.count("}")
def end_of(i):  # a declaration from line i (attribute lines first) to its closing brace
    j = i
    while attribute.match(lines[j].strip()):
        j += 1
    depth = braces(lines[j]); j += 1
    while depth > 0:
        depth += braces(lines[j]); j += 1
    return j
out, depth, i = [], 0, 0
while i < len(lines):
    line = lines[i]; stripped = line.strip()
    if depth <= 1 and stripped and not stripped.startswith(("}", "#", "//")):
        end = end_of(i)
        k = i
        while attribute.match(lines[k].strip()):
            k += 1
        container = depth == 0 and braces(lines[k]) > 0 and re.search(r"\b(extension|struct|enum|class|protocol|actor)\b", lines[k])
        if container:  # keep the type, drop its x86-only members
            if not bad.search("\n".join(lines[i:k + 1])) or "_MaxBuiltinFloatType = Builtin.FPIEEE64" in lines[k]:
                out.extend(lines[i:k + 1]); depth += 1
                i = k + 1
            else:
                i = end
            continue
        chunk = "\n".join(lines[i:end])
        if not bad.search(chunk) or "_MaxBuiltinFloatType = Builtin.FPIEEE64" in chunk:
            out.extend(lines[i:end])
        i = end
        continue
    out.append(line); depth += braces(line); i += 1
print("\n".join(out))
PY
    rm -f "$module/x86_64-unknown-linux-gnu.swiftmodule"
done
compile() {  # target flags...
    local target=$1; shift
    "$swift_bin/swiftc" -target aarch64-unknown-linux-gnu -resource-dir "$res" -sdk "$sysroot" -parse-as-library \
        -module-name "$target" -emit-module -emit-module-path "$work/$target.swiftmodule" -I "$work" -c -O -wmo \
        -module-cache-path "$work/cache" "$@" Sources/"$target"/*.swift -o "$work/$target.o"
    file "$work/$target.o" | sed "s|$work/||"
}
compile Model -D VECTOR_FMA -I Sources/COpenBLAS $(pkg-config --cflags-only-I openblas | sed 's/-I/-Xcc -I/g')
echo "Model: $("$swift_bin/llvm-objdump" -d "$work/Model.o" | grep -c 'fmla[[:space:]]*v') NEON fused multiply-adds (fmla)"
compile Dist -I Sources/CMPI $(pkg-config --cflags-only-I ompi-c | sed 's/-I/-Xcc -I/g')
compile Codec
"$swift_bin/clang" --target=aarch64-linux-gnu --sysroot="$sysroot" -mcpu=neoverse-v1 -O2 -I Sources/CPUCheck/include \
    -c Sources/CPUCheck/*.c -o "$work/CPUCheck.o"
file "$work/CPUCheck.o" | sed "s|$work/||"
