"""benchmarks/gpu_check.py and scripts/gpu_bundle.py, on CPU and offline.

The check runs for real with ``--quick`` (the tiny model trains through our trainer, default vs padded batches)
and must report ``cuda: false`` and skip each GPU part with its reason; the bundle's selection, size limit and
folder are checked with lima-align's own wheel built for real and the other wheels faked (no download).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
CHECK = REPO / "benchmarks" / "gpu_check.py"
BUNDLE = REPO / "scripts" / "gpu_bundle.py"
CPU_ENV = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def _load(path: Path):
    """A script as a module (benchmarks/ and scripts/ are not packages)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gpu_check():
    return _load(CHECK)


@pytest.fixture(scope="module")
def gpu_bundle():
    return _load(BUNDLE)


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-check") / "report.json"
    done = subprocess.run([sys.executable, str(CHECK), "--quick", "--threads", "1", "--peak-tflops", "0.001",
                           "--out", str(out)], capture_output=True, text=True, timeout=240, env=CPU_ENV, cwd=REPO)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return json.loads(out.read_text())


def test_quick_run_on_cpu_trains_the_tiny_model_both_ways(quick_report, gpu_check):
    assert quick_report["cuda"] is False and quick_report["environment"]["gpus"] == []
    assert quick_report["errors"] == []
    throughput = quick_report["parts"]["throughput"]
    assert throughput["status"] == "ok"
    assert throughput["model"]["dtype"] == "float32" and throughput["model"]["mixed_precision"] == "no"
    plan = gpu_check.QUICK
    items = gpu_check.synthetic_examples(plan.steps * plan.batch_size, gpu_check.MODELS["tiny"]["vocab_size"],
                                         plan.max_len)
    every_token = sum(len(item["input_ids"]) for item in items)
    auto, padded = throughput["runs"]["auto"], throughput["runs"]["padded"]
    assert (auto["resolved_batching"], padded["resolved_batching"]) == ("rebalance", "padded")
    for run in (auto, padded):
        assert run["steps"] == plan.steps and run["residual_dropout"] == 0.3
        assert run["trained_tokens"] == every_token  # one epoch: every example trained once, padding not counted
        assert run["timed_tokens"] > 0 and run["timed_seconds"] > 0 and run["tokens_per_s"] > 0
        assert len(run["losses"]) == plan.steps
        # random weights: the LM loss on random tokens is about ln(vocab)
        assert all(abs(loss - math.log(gpu_check.MODELS["tiny"]["vocab_size"])) < 0.5 for loss in run["losses"])
        params = throughput["model"]["parameters"]
        assert run["mfu"] == pytest.approx(6 * params * run["tokens_per_s"] / 0.001e12)
    assert auto["trained_tokens"] == padded["trained_tokens"]
    assert throughput["speedup_auto_over_padded"] == pytest.approx(auto["tokens_per_s"] / padded["tokens_per_s"])
    assert quick_report["mfu_formula"].startswith("mfu = 6 * parameters")


def test_quick_run_on_cpu_skips_every_gpu_part_with_its_reason(quick_report):
    reasons = {item["part"]: item["reason"] for item in quick_report["skipped"]}
    assert set(reasons) == {"flash_packing", "fsdp2", "zero3", "vllm"}
    importable = quick_report["environment"]["importable"]
    assert "fewer than 2 GPUs (0 visible)" in reasons["fsdp2"] and "fewer than 2 GPUs" in reasons["zero3"]
    assert "no CUDA device" in reasons["flash_packing"] and "no CUDA device" in reasons["vllm"]
    assert ("vllm not installed" in reasons["vllm"]) == (not importable["vllm"])
    assert ("flash-attn not installed" in reasons["flash_packing"]) == (not importable["flash_attn"])
    assert ("deepspeed not installed" in reasons["zero3"]) == (not importable["deepspeed"])
    for part, reason in reasons.items():
        assert quick_report["parts"][part] == {"status": "skipped", "reason": reason}
    versions = quick_report["environment"]["versions"]
    assert versions["torch"] == metadata.version("torch")
    assert versions["lima-align"] == metadata.version("lima-align")


def test_skip_reasons_name_missing_packages_and_gpus(gpu_check):
    def env(gpus: int, **importable: bool) -> dict:
        return {"cuda": gpus > 0, "gpu_count": gpus,
                "importable": {"flash_attn": False, "vllm": False, "deepspeed": False, **importable}}

    one = env(1)
    assert gpu_check.skip_reason("throughput", one, quick=False) is None
    assert (gpu_check.skip_reason("flash_packing", one, quick=False)
            == "flash-attn not installed (pip install flash-attn)")
    assert gpu_check.skip_reason("vllm", one, quick=False) == "vllm not installed"
    assert gpu_check.skip_reason("vllm", env(1, vllm=True), quick=False) is None
    assert "fewer than 2 GPUs (1 visible)" in gpu_check.skip_reason("fsdp2", one, quick=False)
    eight = env(8)
    assert gpu_check.skip_reason("fsdp2", eight, quick=False) is None
    assert gpu_check.skip_reason("zero3", eight, quick=False) == "deepspeed not installed (pip install deepspeed)"
    assert "GPU-only" in gpu_check.skip_reason("throughput", env(0), quick=False)
    assert gpu_check.skip_reason("throughput", env(0), quick=True) is None


def test_peak_flops_table_and_overrides(gpu_check, monkeypatch):
    monkeypatch.delenv("GPU_CHECK_PEAK_TFLOPS", raising=False)

    def peak(name: str) -> float | None:
        return gpu_check.peak_flops(None, [{"name": name}])["flops"]

    assert peak("NVIDIA H200") == 989e12 and peak("NVIDIA H100 80GB HBM3") == 989e12
    assert peak("NVIDIA H100 PCIe") == 756e12 and peak("NVIDIA A100-SXM4-80GB") == 312e12
    assert peak("NVIDIA L4") is None and gpu_check.peak_flops(None, [])["flops"] is None
    assert gpu_check.peak_flops(500, [{"name": "NVIDIA H200"}]) == {"flops": 500e12, "source": "--peak-tflops"}
    monkeypatch.setenv("GPU_CHECK_PEAK_TFLOPS", "100")
    assert gpu_check.peak_flops(None, [{"name": "NVIDIA L4"}])["flops"] == 100e12


def test_synthetic_examples_look_like_rendered_ones(gpu_check):
    items = gpu_check.synthetic_examples(64, 1000, 256)
    assert items == gpu_check.synthetic_examples(64, 1000, 256)  # seeded: every part sees the same examples
    assert len({len(item["input_ids"]) for item in items}) > 10
    for item in items:
        ids, labels = item["input_ids"], item["labels"]
        assert 16 <= len(ids) == len(labels) <= 256 and 0 not in ids and max(ids) < 1000
        prompt = labels.index(next(label for label in labels if label != -100))
        assert prompt >= 1 and labels[:prompt] == [-100] * prompt and labels[prompt:] == ids[prompt:]


def test_a_part_that_hangs_is_killed_at_its_limit(gpu_check):
    code, _ = gpu_check.run_child([sys.executable, "-c", "import time; time.sleep(60)"], dict(os.environ), 1)
    assert code is None
    code, log = gpu_check.run_child([sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"],
                                    dict(os.environ), 30)
    assert code == 3 and "boom" in log


@pytest.mark.slow
def test_fsdp2_part_under_torchrun_on_two_cpu_processes(tmp_path):
    """The sharded part's own code (run on GPUs by the check) on 2 gloo processes: FSDP2 runs on CPU too."""
    out = tmp_path / "fsdp2.json"
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           str(CHECK), "--part", "fsdp2", "--part-out", str(out), "--quick", "--threads", "1"],
                          capture_output=True, text=True, timeout=300, env=CPU_ENV, cwd=tmp_path)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    result = json.loads(out.read_text())
    assert result["status"] == "ok" and result["world_size"] == 2 and result["global_batch"] == 16
    assert result["run"]["strategy"] == "fsdp2" and result["run"]["tokens_per_s"] > 0
    check = _load(CHECK)
    items = check.synthetic_examples(2 * 16, check.MODELS["tiny"]["vocab_size"], check.QUICK.max_len)
    assert result["run"]["trained_tokens"] == sum(len(item["input_ids"]) for item in items)


def test_bundle_selection_carries_only_pure_python_wheels(gpu_bundle):
    carry, left_out = gpu_bundle.select()
    assert {"transformers", "accelerate", "peft", "huggingface-hub"} <= set(carry)
    assert carry["transformers"] == metadata.version("transformers")
    assert not set(carry) & set(gpu_bundle.closure(("torch",)))  # the host's torch brings those
    reasons = {item["name"]: item["reason"] for item in left_out}
    assert reasons["numpy"].startswith("platform wheel") and reasons["tokenizers"].startswith("platform wheel")
    assert reasons["torch"] == "comes with torch"
    assert all(gpu_bundle.is_pure(gpu_bundle.wheel_tags(name)) for name in carry)
    # a package whose installed wheel was built for a platform is left out, whatever it is
    carry, left_out = gpu_bundle.select(tags=lambda name: ["cp311-cp311-linux_x86_64"] if name == "peft"
                                        else ["py3-none-any"])
    assert "peft" not in carry and any(i["name"] == "peft" and "platform" in i["reason"] for i in left_out)


def test_bundle_size_check_fails_over_the_limit_naming_the_largest(gpu_bundle, tmp_path):
    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels" / "small-1-py3-none-any.whl").write_bytes(b"x" * 2**20)
    with open(tmp_path / "wheels" / "big-1-py3-none-any.whl", "wb") as big:
        big.truncate(2 * 2**20)
    assert gpu_bundle.check_size(tmp_path, limit_mib=3.5) == 3 * 2**20
    with pytest.raises(gpu_bundle.BundleError, match=r"3\.0 MiB, over the 2\.5 MiB limit; largest: "
                                                     r"wheels/big-1-py3-none-any\.whl \(2\.0 MiB\)"):
        gpu_bundle.check_size(tmp_path, limit_mib=2.5)
    assert gpu_bundle.drop_huge(tmp_path / "wheels", huge_mib=1.5) == [
        {"name": "big", "version": "1", "reason": "2.0 MiB wheel: over 1.5 MiB, not carried"}]
    assert sorted(p.name for p in (tmp_path / "wheels").iterdir()) == ["small-1-py3-none-any.whl"]


def test_bundle_folder_holds_the_check_our_wheel_and_the_offline_install(gpu_bundle, tmp_path, monkeypatch):
    def fake_download(pins: dict[str, str], dest: Path) -> dict[str, str]:
        for name, version in pins.items():
            if name != "rich":
                with zipfile.ZipFile(dest / f"{name.replace('-', '_')}-{version}-py3-none-any.whl", "w") as wheel:
                    wheel.writestr(f"{name}/__init__.py", "")
        return {"rich": "No matching distribution found for rich"}

    out = tmp_path / "gpu-bundle"
    info = gpu_bundle.build_bundle(out, download=fake_download)
    assert (out / "gpu_check.py").read_bytes() == CHECK.read_bytes()
    run_sh = (out / "run.sh").read_text()
    assert os.access(out / "run.sh", os.X_OK)
    assert subprocess.run(["bash", "-n", str(out / "run.sh")]).returncode == 0  # it parses
    assert "--no-index --no-deps" in run_sh and "gpu_check.py" in run_sh
    assert "pip install --no-index --find-links wheels -r requirements.txt" in (out / "README.txt").read_text()
    declared = {Requirement(r).name: str(Requirement(r)) for r in metadata.requires("lima-align")}
    wanted = [Requirement(line) for line in (out / "requirements.txt").read_text().split()]
    assert {r.name for r in wanted} == {"transformers", "accelerate", "peft", "pyyaml"}
    assert all(str(r) == declared[r.name] for r in wanted)
    on_disk = sorted((out / "wheels").glob("*.whl"))
    assert [w["file"] for w in info["wheels"]] == [p.name for p in on_disk]
    for entry, path in zip(info["wheels"], on_disk):
        assert entry["bytes"] == path.stat().st_size
        assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    own = next(p for p in on_disk if p.name.startswith("lima_align-"))
    assert own.name == f"lima_align-{metadata.version('lima-align')}-py3-none-any.whl"
    assert {"lima_align/train/trainer.py", "lima_align/chat_format.py"} <= set(zipfile.ZipFile(own).namelist())
    assert {"name": "rich", "version": "", "reason": "download failed: No matching distribution found for rich"} \
        in info["left_out"]
    assert json.loads((out / "manifest.json").read_text())["wheels"] == info["wheels"]
    assert info["total_bytes"] <= 60 * 2**20
    (out / "stray").write_text("")
    monkeypatch.setattr(gpu_bundle, "build_own_wheel", lambda dest: fake_download({"lima-align": "0"}, dest))
    gpu_bundle.build_bundle(out, download=fake_download)  # an earlier bundle is replaced
    assert not (out / "stray").exists()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    with pytest.raises(gpu_bundle.BundleError, match="not a bundle"):
        gpu_bundle.build_bundle(tmp_path / "notes", download=fake_download)
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"
