#!/usr/bin/env python3
"""Classifies a fuzzer report (the output of running a fuzz target on one saved input) by where the
failure happened, from its first stack trace:

    ours     the failure is in the project's code (a Swift trap, an ASan error in Swift code, a
             harness check, a huge allocation or a hang in our frames), or it cannot be placed
    libhdf5  the faulting frame is inside libhdf5 itself (below every runtime frame) and, for an
             ASan memory error, the memory involved was allocated by libhdf5 too, not handed to it
             by our code

Prints one line: `ours SIGNATURE` or `libhdf5 SIGNATURE`, where SIGNATURE is the error kind and
the first three named frames of the deciding stack (stable for one build of libhdf5), e.g.
`SEGV:H5F__accum_read<H5PB_read<H5F_block_read`.

    python3 Tests/Fuzz/classify.py REPORT
"""
import re
import sys

RUNTIME = re.compile(
    r"(libc\.so|libc-|/sysdeps/|/csu/|/nptl/|compiler-rt|sanitizer_common|llvm-project|"
    r"__asan|__sanitizer|__interceptor|\bfuzzer::|\bin (malloc|calloc|realloc|free|memcpy|memmove|"
    r"memset|strlen|strcmp|strncmp|strcpy|memcmp|posix_memalign|aligned_alloc|abort|raise)\b|"
    r"libclang_rt|libswiftCore\.so.*swift_(slowAlloc|allocObject)|\bin gsignal\b|libstdc\+\+|__libc)"
)
FRAME = re.compile(r"^\s*#(\d+)\s+0x[0-9a-f]+\s+(.*)$")


def stacks(lines):
    """Stack traces in order, each `(heading, frames)`: the line before the trace and its frames."""
    result, current, heading, previous = [], [], "", ""
    for line in lines:
        match = FRAME.match(line)
        if match:
            if match.group(1) == "0":
                if current:
                    result.append((heading, current))
                current, heading = [], previous
            current.append(match.group(2))
        else:
            if current:
                result.append((heading, current))
                current = []
            previous = line
    if current:
        result.append((heading, current))
    return result


def own_frames(stack):
    return [frame for frame in stack if not RUNTIME.search(frame)]


def name(frame):
    match = re.match(r"in (\S+)", frame)
    if match:
        return match.group(1)
    match = re.search(r"\(([^()]*\+0x[0-9a-f]+)\)", frame)
    return match.group(1).split("/")[-1] if match else frame.split()[0]


def in_libhdf5(frame):
    return "libhdf5" in frame


def kind(text):
    for pattern, label in [
        (r"fuzz harness: (.*)", "harness"),
        (r"SUMMARY: AddressSanitizer: ([\w-]+)", None),
        (r"ERROR: AddressSanitizer: ([\w-]+)", None),
        (r"ERROR: libFuzzer: (timeout)", None),
        (r"ERROR: libFuzzer: out-of-memory \(malloc", "huge-allocation"),
        (r"ERROR: libFuzzer: out-of-memory", "rss-limit"),
        (r"ERROR: libFuzzer: (deadly signal)", None),
        (r"Fatal error: (.*)", "swift-trap"),
    ]:
        match = re.search(pattern, text)
        if match:
            return label or match.group(1).replace(" ", "-")
    return "unknown"


def classify(text):
    error = kind(text)
    all_stacks = stacks(text.splitlines())
    first = own_frames(all_stacks[0][1]) if all_stacks else []
    signature = error + ":" + "<".join(name(f) for f in first[:3])
    if error in ("harness", "swift-trap", "rss-limit", "unknown") or not first or not in_libhdf5(first[0]):
        return "ours", signature
    # An ASan error about memory that our code allocated and handed to libhdf5 (a buffer too
    # small for what we asked it to read) is our bug, even though libhdf5 made the access.
    for heading, frames in all_stacks[1:]:
        if "allocated by thread" in heading:
            owner = own_frames(frames)
            if owner and not in_libhdf5(owner[0]):
                return "ours", signature + " (memory allocated in " + name(owner[0]) + ")"
    return "libhdf5", signature


def main():
    with open(sys.argv[1], errors="replace") as f:
        text = f.read()
    verdict, signature = classify(text)
    print(verdict, signature)


if __name__ == "__main__":
    main()
