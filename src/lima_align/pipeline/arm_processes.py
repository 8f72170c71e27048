"""Parallel ablation arms: each arm in its own process (``lima-align ablate RESOLVED.yaml --arm NAME``), pinned
to one device slot, ``parallel`` at a time; the parent waits for all of them, then plots (:mod:`lima_align.pipeline.ablate`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lima_align.errors import LimaError
from lima_align.fileio import atomic_write

if TYPE_CHECKING:
    from lima_align.pipeline.ablate import AblationConfig, ArmConfig

Log = Callable[[str], None]


def _slot_device(cfg: AblationConfig, slot: int) -> tuple[str | None, dict[str, str]]:
    """The device a parallel slot uses, and the environment that pins its process to it."""
    import os

    device = cfg.devices[slot % len(cfg.devices)] if cfg.devices else cfg.device
    env = dict(os.environ)
    if device and device.startswith("cuda:"):  # the process sees only its GPU, as cuda:0 (training uses it too)
        index = device.split(":", 1)[1]
        visible = [v for v in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
        if visible:  # cuda:N counts within the GPUs this process was given (a scheduler's mask)
            if not index.isdigit() or int(index) >= len(visible):
                raise LimaError(f"devices: {device} is not among the {len(visible)} visible GPU(s)")
            index = visible[int(index)]
        env["CUDA_VISIBLE_DEVICES"] = index
        device = "cuda"
    elif device == "cpu" or not device:  # share the cores instead of oversubscribing them
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // cfg.parallel)))
    return device, env


class _ArmProcesses:
    """The arms of a parallel ablation, each as ``python -m lima_align ablate RESOLVED.yaml --arm NAME`` in its
    own process and device slot (output in ``arms/<name>/log.txt``); stopping it stops every arm process."""

    def __init__(self, cfg: AblationConfig, resolved: Path, log: Log):
        import queue
        import threading

        self.cfg, self.resolved, self.log = cfg, resolved, log
        self.slots: queue.Queue[int] = queue.Queue()
        for slot in range(cfg.parallel):
            self.slots.put(slot)
        self.children: list[Any] = []
        self.lock, self.stopping = threading.Lock(), threading.Event()

    def run_one(self, arm: ArmConfig) -> tuple[str, int, Path]:
        import subprocess
        import sys

        slot = self.slots.get()
        try:
            device, env = _slot_device(self.cfg, slot)
            logfile = Path(self.cfg.out) / "arms" / arm.name / "log.txt"
            logfile.parent.mkdir(parents=True, exist_ok=True)
            cmd = [sys.executable, "-m", "lima_align", "ablate", str(self.resolved),
                   *([f"device={device}"] if device else []), "--arm", arm.name]
            with logfile.open("a", encoding="utf-8") as fh:
                with self.lock:
                    if self.stopping.is_set():
                        return arm.name, -1, logfile
                    child = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
                    self.children.append(child)
                self.log(f"arm {arm.name}: started in its own process (slot {slot}, device {device or 'auto'}) "
                         f"-> {logfile}")
                code = child.wait()
            self.log(f"arm {arm.name}: {'finished' if code == 0 else f'FAILED (exit {code})'}")
            return arm.name, code, logfile
        finally:
            self.slots.put(slot)

    def stop(self) -> None:
        """Terminate the running arms (SIGTERM: training saves its state first) and start no new one."""
        import subprocess

        with self.lock:
            self.stopping.set()
        for child in self.children:
            if child.poll() is None:
                child.terminate()
        for child in self.children:
            try:
                child.wait(timeout=120)
            except subprocess.TimeoutExpired:
                child.kill()


def run_arms_in_processes(cfg: AblationConfig, log: Log) -> None:
    """Run the arms ``cfg.parallel`` at a time in their own processes; Ctrl-C or SIGTERM stops them all."""
    import signal
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from lima_align.config import dump_yaml

    resolved = Path(cfg.out) / "ablation-resolved.yaml"
    with atomic_write(resolved) as fh:
        fh.write(dump_yaml(cfg))
    arms = _ArmProcesses(cfg, resolved, log)

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, interrupt) if main else None
    pool = ThreadPoolExecutor(cfg.parallel)
    try:
        results = list(pool.map(arms.run_one, cfg.arms))
    finally:
        arms.stop()
        pool.shutdown(wait=True, cancel_futures=True)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    failed = [f"{name} (see {path})" for name, code, path in results if code != 0]
    if failed:
        raise LimaError(f"arm(s) failed: {', '.join(failed)}; run again to resume them")
