"""Build the folder that carries lima-align's GPU check onto a host with torch but no package registry.

    python scripts/gpu_bundle.py [--out gpu-bundle] [--limit-mib 60]          (``make gpu-bundle``)

    gpu-bundle/
      gpu_check.py      benchmarks/gpu_check.py, run there as ``python gpu_check.py``
      run.sh            the offline install (only what the host lacks), then the check
      README.txt        the same, step by step
      requirements.txt  what the check needs beyond lima-align itself, with lima-align's own version ranges
      manifest.json     every wheel (file, bytes, sha256), and every package left out with the reason
      wheels/           lima-align (built from this checkout) + the pure-Python wheels of its training path

Which wheels: the dependency closure, at the versions installed here, of what ``lima_align.train`` needs beyond
torch (transformers, accelerate, pyyaml; peft for LoRA), minus torch's own closure (the host has torch, so it has
those).
Only pure-Python (``*-none-any``) wheels are carried: a wheel built for one platform and Python (numpy, tokenizers,
safetensors, ...) may not fit the host's, and an image with torch and transformers has them; each is listed as left
out, by name and version. The folder must fit in ``--limit-mib`` (60 MiB: what a call to the GPU host carries);
over it the build fails, naming the largest files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Callable

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
CHECK = REPO / "benchmarks" / "gpu_check.py"
# what lima_align.train imports beyond torch (peft: LoRA runs; pyyaml: lima_align.config)
ROOTS = ("transformers", "accelerate", "peft", "pyyaml")
HOST_HAS = ("torch",)  # the host's own; their closure is not carried
LIMIT_MIB = 60.0
HUGE_MIB = 25.0  # one wheel above this is left out (listed), not carried: it would crowd out the rest

Downloader = Callable[[dict[str, str], Path], dict[str, str]]


class BundleError(RuntimeError):
    """The bundle cannot be built as asked (too large, a wheel that cannot be had)."""


def closure(roots: tuple[str, ...]) -> dict[str, str | None]:
    """Every distribution ``roots`` require, transitively, as installed here: name -> version (None: absent)."""
    found: dict[str, str | None] = {}
    todo = list(roots)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in found:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            found[name] = None
            continue
        found[name] = dist.version
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return found


def wheel_tags(name: str) -> list[str]:
    """The tags of the wheel ``name`` was installed from (its dist-info WHEEL file); [] when unknown."""
    text = metadata.distribution(name).read_text("WHEEL") or ""
    return [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Tag:")]


def is_pure(tags: list[str]) -> bool:
    return bool(tags) and all(tag.endswith("-none-any") for tag in tags)


def select(roots: tuple[str, ...] = ROOTS, host_has: tuple[str, ...] = HOST_HAS,
           tags: Callable[[str], list[str]] = wheel_tags) -> tuple[dict[str, str], list[dict[str, str]]]:
    """(pure-Python distributions to carry: name -> version, the ones left out with the reason)."""
    provided = closure(host_has)
    carry, left_out = {}, []
    for name, version in sorted(closure(roots).items()):
        if name in provided:
            left_out.append({"name": name, "version": str(version), "reason": f"comes with {', '.join(host_has)}"})
        elif version is None:
            left_out.append({"name": name, "version": "", "reason": "not installed here"})
        elif not is_pure(tags(name)):
            left_out.append({"name": name, "version": version,
                             "reason": f"platform wheel ({', '.join(tags(name)) or 'tags unknown'}): the host "
                                       "must have it"})
        else:
            carry[name] = version
    return carry, left_out


def pip_download(pins: dict[str, str], dest: Path) -> dict[str, str]:
    """Download the wheels of ``pins`` (no dependencies, wheels only) into ``dest``; returns pins that failed."""
    base = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "-d", str(dest)]
    if subprocess.run(base + [f"{n}=={v}" for n, v in pins.items()], capture_output=True).returncode == 0:
        return {}
    failed = {}  # one bad pin fails the whole call: find which
    for name, version in pins.items():
        done = subprocess.run(base + [f"{name}=={version}"], capture_output=True, text=True)
        if done.returncode != 0:
            failed[name] = (done.stderr.strip().splitlines() or ["pip download failed"])[-1]
    return failed


def build_own_wheel(dest: Path, repo: Path = REPO) -> Path:
    """lima-align's wheel, built from a copy of the checkout (an in-tree build would write build/ there)."""
    with tempfile.TemporaryDirectory(prefix="lima-wheel-") as tmp:
        source = Path(tmp) / "src-copy"
        source.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(repo / name, source / name)
        shutil.copytree(repo / "src", source / "src",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                               "--wheel-dir", str(dest), str(source)], capture_output=True, text=True)
        if done.returncode != 0:
            raise BundleError(f"building lima-align's wheel failed:\n{done.stderr[-3000:]}")
    wheels = sorted(dest.glob("lima_align-*.whl"))
    if not wheels:
        raise BundleError("pip wheel ran but wrote no lima_align-*.whl")
    return wheels[-1]


def check_size(folder: Path, limit_mib: float = LIMIT_MIB) -> int:
    """Total bytes under ``folder``; raises BundleError naming the largest files when over ``limit_mib``."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    total = sum(p.stat().st_size for p in files)
    if total > limit_mib * 2**20:
        largest = sorted(files, key=lambda p: p.stat().st_size, reverse=True)[:5]
        names = ", ".join(f"{p.relative_to(folder)} ({p.stat().st_size / 2**20:.1f} MiB)" for p in largest)
        raise BundleError(f"{folder} is {total / 2**20:.1f} MiB, over the {limit_mib:g} MiB limit; "
                          f"largest: {names}")
    return total


def requirements(roots: tuple[str, ...] = ROOTS) -> list[str]:
    """``roots`` with the version ranges lima-align itself declares. Not torch: the host's is taken as it is (asking
    pip for it would make pip re-check, offline, everything the host's torch depends on)."""
    wanted = {canonicalize_name(n) for n in roots}
    declared = [Requirement(line) for line in metadata.distribution("lima-align").requires or []]
    return [str(r) for r in declared if canonicalize_name(r.name) in wanted and r.marker is None]


def drop_huge(wheels_dir: Path, huge_mib: float = HUGE_MIB) -> list[dict[str, str]]:
    """Remove the wheels over ``huge_mib``; what was removed, as left-out entries."""
    dropped = []
    for path in sorted(wheels_dir.glob("*.whl")):
        if path.stat().st_size > huge_mib * 2**20 and not path.name.startswith("lima_align-"):
            name, version = path.name.split("-")[:2]
            size = path.stat().st_size / 2**20
            dropped.append({"name": canonicalize_name(name), "version": version,
                            "reason": f"{size:.1f} MiB wheel: over {huge_mib:g} MiB, not carried"})
            path.unlink()
    return dropped


def manifest(wheels_dir: Path, left_out: list[dict[str, str]], failed: dict[str, str]) -> dict:
    wheels = [{"file": p.name, "bytes": p.stat().st_size, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
              for p in sorted(wheels_dir.glob("*.whl"))]
    not_pure = [p.name for p in wheels_dir.glob("*.whl") if not p.name.endswith("-none-any.whl")]
    if not_pure:
        raise BundleError(f"platform wheels in {wheels_dir}: {not_pure} (only pure-Python wheels are carried)")
    return {"wheels": wheels, "wheel_bytes": sum(w["bytes"] for w in wheels),
            "left_out": left_out + [{"name": n, "version": "", "reason": f"download failed: {why}"}
                                    for n, why in failed.items()]}


RUN_SH = """#!/usr/bin/env bash
# Offline install of what this host lacks, then lima-align's GPU check. Usage: bash run.sh [gpu_check.py options]
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
PY="${PYTHON:-python}"
# lima-align itself, not its dependency list: most of that serves curation and evaluation, which this check
# never imports, and an offline pip could not fetch it
"$PY" -m pip install --no-index --no-deps --force-reinstall "$HERE"/wheels/lima_align-*.whl
# what the training path needs; a requirement this host already meets is left as it is
"$PY" -m pip install --no-index --find-links "$HERE/wheels" -r "$HERE/requirements.txt" || \\
  echo "run.sh: some requirement could not be installed offline (see above); running the check anyway" >&2
cd "$HERE"
exec "$PY" gpu_check.py --out "$HERE/gpu-check.json" "$@"
"""

README = """lima-align GPU check bundle ({size:.1f} MiB of wheels)
===================================================

For a GPU host that has Python >= 3.10 and torch >= 2.6 (CUDA), maybe transformers, and no package registry.

1. Copy this folder onto the host.
2. bash run.sh                      (or: PYTHON=/path/to/python bash run.sh --peak-tflops 989)
   It installs, offline, only what the host lacks, then runs the check (<= 8 minutes) and writes
   gpu-check.json here: every number, the environment, and a "skipped" list naming what could not run and why.
3. Bring gpu-check.json back.

By hand, the same steps:
    pip install --no-index --no-deps wheels/lima_align-*.whl
    pip install --no-index --find-links wheels -r requirements.txt
    python gpu_check.py --out gpu-check.json          (--quick: a tiny model, 2 steps; --help)

`pip install --no-index --find-links wheels lima-align` works only where all of lima-align's dependencies are
installed already: most of them (curation, evaluation, a model package) are not carried here, because the check
does not import them; pip's warning that lima-align requires them is expected. A host whose transformers is older
than requirements.txt asks gets the carried one, which needs the platform packages it depends on (tokenizers,
safetensors, regex, ...) recent enough; where pip cannot, run.sh still runs the check, and its JSON says what
failed.

Carried (manifest.json has their sha256):
{carried}
Left out (the host must have the platform wheels among these; a CUDA image with transformers does):
{left_out}
Optional, not carried: flash-attn (the FlashAttention-2 packing check), vllm (generation), deepspeed (ZeRO-3).
"""


def write_docs(out: Path, info: dict) -> None:
    (out / "requirements.txt").write_text("\n".join(requirements()) + "\n")
    (out / "run.sh").write_text(RUN_SH)
    (out / "run.sh").chmod(0o755)
    left_out = "\n".join(f"    {i['name']} {i['version']}: {i['reason']}" for i in info["left_out"]) or "    none"
    carried = "\n".join(f"    {w['file']} ({w['bytes'] / 2**20:.2f} MiB)" for w in info["wheels"])
    (out / "README.txt").write_text(README.format(size=info["wheel_bytes"] / 2**20, left_out=left_out,
                                                  carried=carried))
    (out / "manifest.json").write_text(json.dumps(info, indent=2) + "\n")


def build_bundle(out: Path, limit_mib: float = LIMIT_MIB, download: Downloader = pip_download) -> dict:
    """Write the bundle into ``out`` (replacing an earlier bundle there) and return its manifest."""
    if out.exists():
        if any(out.iterdir()) and not (out / "manifest.json").is_file():
            raise BundleError(f"{out} exists and is not a bundle (no manifest.json): refusing to replace it")
        shutil.rmtree(out)
    wheels = out / "wheels"
    wheels.mkdir(parents=True)
    shutil.copy2(CHECK, out / "gpu_check.py")
    build_own_wheel(wheels)
    carry, left_out = select()
    failed = download(carry, wheels)
    info = manifest(wheels, left_out + drop_huge(wheels), failed)
    write_docs(out, info)
    info["total_bytes"] = check_size(out, limit_mib)
    return info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="gpu-bundle")
    parser.add_argument("--limit-mib", type=float, default=LIMIT_MIB)
    args = parser.parse_args()
    try:
        info = build_bundle(Path(args.out), args.limit_mib)
    except BundleError as exc:
        print(f"gpu-bundle: {exc}", file=sys.stderr)
        return 1
    print(f"gpu-bundle: {args.out}/ is {info['total_bytes'] / 2**20:.1f} MiB (limit {args.limit_mib:g}): "
          f"{len(info['wheels'])} wheels; left out {len(info['left_out'])}: "
          f"{', '.join(i['name'] for i in info['left_out'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
