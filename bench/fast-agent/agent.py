# Berth builds Python code bundles; this entry point replaces the interpreter with the Rust fast
# agent shipped next to it, so the benchmark measures Berth rather than Python (see bench/README.md).
import os
binary = os.path.join(os.path.dirname(os.path.abspath(__file__)), "berth-fast-agent")
os.execv(binary, [binary])
