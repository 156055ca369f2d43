"""The device choice and the GPU under bubblewrap, on a fake machine: what is bound, what the child is told.

No GPU is needed: the GPU's facts are data (challenge.scoring.gpu.GpuFacts), so the bubblewrap
command for a machine with GPUs is built from a fake device list and checked argument by argument;
a real bubblewrap then runs a child with fake driver files bound, network still unshared.
benchmarks/gpu_check.sh exercises the real thing on a machine with a GPU.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from challenge.errors import ChallengeError
from challenge.scoring import gpu as gpus
from challenge.scoring.gpu import Gpu, GpuFacts
from challenge.scoring.sandbox import Sandbox, probe
from challenge.scoring.settings import Settings
from tests.conftest import TINY, compose_config, run_cli

HAVE_BWRAP = probe.bwrap_problem() is None
PCI = "/sys/devices/pci0000:00/0000:00:05.0"
FAKE = GpuFacts(
    nodes=("/dev/nvidia-uvm", "/dev/nvidia1", "/dev/nvidiactl"),
    libraries=("/usr/lib/x86_64-linux-gnu", "/opt/nvidia/lib64"),
    read_only=("/proc/driver/nvidia", "/sys/module/nvidia", PCI),
    links=((PCI, "/sys/bus/pci/devices/0000:00:05.0"),),
)
FAKE_ARGS = [
    "--dev-bind",
    "/dev/nvidia-uvm",
    "/dev/nvidia-uvm",
    "--dev-bind",
    "/dev/nvidia1",
    "/dev/nvidia1",
    "--dev-bind",
    "/dev/nvidiactl",
    "/dev/nvidiactl",
    "--ro-bind",
    "/opt/nvidia/lib64",
    "/opt/nvidia/lib64",  # /usr/lib/x86_64-linux-gnu is inside /usr, bound already
    "--ro-bind",
    "/proc/driver/nvidia",
    "/proc/driver/nvidia",
    "--ro-bind",
    "/sys/module/nvidia",
    "/sys/module/nvidia",
    "--ro-bind",
    PCI,
    PCI,
    "--symlink",
    PCI,
    "/sys/bus/pci/devices/0000:00:05.0",
]


def make_box(tmp_path: Path, isolation: str, gpu: Gpu | None) -> Sandbox:
    dirs = [tmp_path / d for d in ("inputs", "outputs", "scratch")]
    for d in dirs:
        d.mkdir(exist_ok=True)
    return Sandbox(*dirs, Settings.default_limits(), isolation, gpu)


def test_gpu_arguments_from_a_fake_device_list() -> None:
    assert gpus.bwrap_args(FAKE, ("/usr", "/bin")) == FAKE_ARGS
    assert gpus.library_path(FAKE) == "/usr/lib/x86_64-linux-gnu:/opt/nvidia/lib64"
    assert gpus.new_folders(FAKE) == ["/sys/module/nvidia", PCI, "/sys/bus/pci/devices/0000:00:05.0"]


@pytest.mark.skipif(not HAVE_BWRAP, reason="needs bubblewrap")
def test_bwrap_command_on_a_machine_with_gpus(tmp_path: Path) -> None:
    box = make_box(tmp_path, "bwrap", Gpu("1", "Fake H200", FAKE))
    cmd = box.command(["python"])
    start = cmd.index("--dev-bind")
    assert cmd[start : start + len(FAKE_ARGS)] == FAKE_ARGS
    assert cmd.index("--dev") < start < cmd.index("--remount-ro")  # after /dev is made, before it is read-only
    assert "--unshare-net" in cmd  # the GPU takes nothing off the network namespace
    for folder in ("/sys", "/sys/module", "/sys/bus/pci/devices", "/sys/devices/pci0000:00"):
        assert cmd[cmd.index(folder) - 3 : cmd.index(folder) + 1] == ["--perms", "0755", "--dir", folder]
    env = box.env()
    assert (env["CUDA_VISIBLE_DEVICES"], env["LD_LIBRARY_PATH"]) == ("1", "/usr/lib/x86_64-linux-gnu:/opt/nvidia/lib64")
    assert box.protections.device.startswith(
        "cuda: GPU 1 (Fake H200) as the child's only CUDA device (CUDA_VISIBLE_DEVICES=1); "
        "bound: /dev/nvidia-uvm, /dev/nvidia1, /dev/nvidiactl; the device nodes of all 1 GPU(s) are bound"
    )


@pytest.mark.parametrize(
    "isolation", [pytest.param("bwrap", marks=pytest.mark.skipif(not HAVE_BWRAP, reason="needs bubblewrap")), "none"]
)
def test_without_a_gpu_nothing_is_bound_and_cuda_is_hidden(tmp_path: Path, isolation: str) -> None:
    box = make_box(tmp_path, isolation, None)
    cmd = " ".join(box.command(["python"]))
    assert "--dev-bind" not in cmd and "nvidia" not in cmd
    assert box.env()["CUDA_VISIBLE_DEVICES"] == "" and "LD_LIBRARY_PATH" not in box.env()
    assert box.protections.device == "cpu: no GPU is passed in (no /dev/nvidia* bound, CUDA_VISIBLE_DEVICES empty)"


@pytest.mark.skipif(not HAVE_BWRAP, reason="needs bubblewrap")
def test_a_child_with_fake_driver_files_bound_sees_them_and_no_network(tmp_path: Path) -> None:
    driver = tmp_path / "host" / "driver" / "nvidia"
    (driver / "gpus" / "0000:00:05.0").mkdir(parents=True)
    (driver / "version").write_text("NVRM version: fake 550.00\n")
    facts = GpuFacts(nodes=("/dev/null",), libraries=(), read_only=(str(driver),))
    box = make_box(tmp_path, "bwrap", Gpu("3", "Fake", facts))
    script = box.inputs / "script.py"
    script.write_text(
        "import os, socket\n"
        f"print(open({str(driver / 'version')!r}).read().strip(), os.listdir({str(driver / 'gpus')!r}), "
        "os.environ['CUDA_VISIBLE_DEVICES'])\n"
        "print(sorted(n for _, n in socket.if_nameindex()))\n"
    )
    logs = tmp_path / "out.log", tmp_path / "err.log"
    outcome = box.run([sys.executable, f"{box.inside(box.inputs)}/script.py"], *logs, lambda tree: None)
    assert outcome.returncode == 0, logs[1].read_text()
    assert logs[0].read_text().splitlines() == ["NVRM version: fake 550.00 ['0000:00:05.0'] 3", "['lo']"]


def test_discover_reads_a_fake_machine(tmp_path: Path) -> None:
    dev, proc, sys_root = tmp_path / "dev", tmp_path / "proc" / "driver" / "nvidia", tmp_path / "sys"
    for name in ("nvidia0", "nvidiactl", "nvidia-uvm", "null"):
        (dev / name).parent.mkdir(parents=True, exist_ok=True)
        (dev / name).touch()
    (proc / "gpus" / "0000:00:05.0").mkdir(parents=True)
    (sys_root / "module" / "nvidia").mkdir(parents=True)
    (sys_root / "devices" / "system" / "cpu").mkdir(parents=True)  # no NUMA folder on this fake machine: none bound
    real = sys_root / "devices" / "pci0000:00" / "0000:00:05.0"
    real.mkdir(parents=True)
    (sys_root / "bus" / "pci" / "devices").mkdir(parents=True)
    (sys_root / "bus" / "pci" / "devices" / "0000:00:05.0").symlink_to(real)
    maps = tmp_path / "maps"
    maps.write_text(
        "7f00-7f01 r-xp 00000000 08:01 1 /usr/lib/x86_64-linux-gnu/libc.so.6\n"
        "7f02-7f03 r-xp 00000000 08:01 2 /opt/driver/lib/libcuda.so.550.00\n"
        "7f04-7f05 r--p 00001000 08:01 2 /opt/driver/lib/libcuda.so.550.00\n"
        "7f06-7f07 r-xp 00000000 08:01 3 /usr/lib/x86_64-linux-gnu/libnvidia-ml.so.550.00\n"
        "7f08-7f09 rw-p 00000000 00:00 0 [heap]\n"
    )
    facts = gpus.discover(dev, maps, proc, sys_root)
    assert facts == GpuFacts(
        nodes=tuple(str(dev / n) for n in ("nvidia-uvm", "nvidia0", "nvidiactl")),
        libraries=("/opt/driver/lib", "/usr/lib/x86_64-linux-gnu"),
        read_only=(
            str(proc),
            str(sys_root / "module" / "nvidia"),
            str(sys_root / "devices" / "system" / "cpu"),
            str(real),
        ),
        links=((str(real), str(sys_root / "bus" / "pci" / "devices" / "0000:00:05.0")),),
    )


def test_device_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    assert gpus.resolve_device("cpu") == "cpu"
    assert gpus.resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(
        ChallengeError, match=r"^scorer.device='gpu' is not one of auto, cpu, cuda: set scorer.device=auto"
    ):
        gpus.resolve_device("gpu")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert gpus.assigned() == "2"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert gpus.assigned() == "0"


NO_CUDA = (
    "scorer.device=cuda but torch finds no CUDA device on this machine: set scorer.device=auto (CUDA when "
    "present) or scorer.device=cpu"
)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error of a machine without CUDA")
def test_cuda_required_without_cuda_is_refused_with_the_fix(tmp_path: Path) -> None:
    cfg = compose_config("score", [*TINY, "scorer.device=cuda"], tmp_path)
    with pytest.raises(ChallengeError) as e:
        Settings.from_config(cfg)
    assert str(e.value) == NO_CUDA
    assert Settings.from_config(compose_config("score", [*TINY, "scorer.device=auto"], tmp_path)).device == "cpu"


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error of a machine without CUDA")
def test_cuda_required_without_cuda_is_one_line_and_exit_2(tmp_path: Path) -> None:
    r = run_cli(
        "score",
        "submissions/template.py",
        "experiment=tiny",
        "logger=none",
        "scorer.device=cuda",
        f"hydra.run.dir={tmp_path}",
        cwd=Path(__file__).resolve().parent.parent,
        env={"CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "")},
    )
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == f"error: {NO_CUDA}"


def test_one_device_setting_drives_the_pool_and_the_scorer_and_keys_pools_by_the_resolved_device(
    tmp_path: Path,
) -> None:
    """`device` is where the pool's models train and are evaluated and where the judge evaluates, so the
    reference outputs and the unlearned ones come from one device; a pool is keyed by the device it
    resolves to, so pools built before the setting keep their fingerprints."""
    from challenge.checks import check_values
    from challenge.pool.folder import device_type, fingerprint_config

    cpu = compose_config("score", [*TINY, "device=cpu"], tmp_path)
    assert (cpu.trainer.accelerator, device_type(cpu), Settings.from_config(cpu).device) == ("cpu", "cpu", "cpu")
    default = compose_config("score", TINY, tmp_path)
    dm = instantiate(default.data)
    dm.setup()
    keyed = fingerprint_config(default, dm)
    assert "accelerator" not in keyed["trainer"] and keyed["device"] == device_type(
        default
    )  # the device it resolves to keys the pool
    if device_type(default) == "cpu":  # auto and cpu are one pool here
        assert keyed == fingerprint_config(cpu, dm)
    assert Settings.from_config(default).device == device_type(default).replace("mps", "cpu")
    apart = compose_config(
        "score", [*TINY, "device=cpu", "scorer.device=auto"], tmp_path
    )  # set apart on purpose: still possible
    assert apart.trainer.accelerator == "cpu" and apart.scorer.device == "auto"
    with pytest.raises(
        ChallengeError,
        match=r"^device=gpu is not one of auto, cpu, cuda: set device=auto \(CUDA when present\) or device=cpu$",
    ):
        check_values(compose_config("score", [*TINY, "device=gpu"], tmp_path))
    if not torch.cuda.is_available():
        with pytest.raises(
            ChallengeError, match=r"^device=cuda but torch finds no CUDA device on this machine: set device=auto"
        ):
            check_values(compose_config("pool", [*TINY, "device=cuda"], tmp_path))


def test_the_device_line_of_a_plain_process_says_every_gpu_is_reachable(tmp_path: Path) -> None:
    box = make_box(tmp_path, "none", Gpu("0", "Fake H200", FAKE))
    assert box.protections.device == (
        "cuda: GPU 0 (Fake H200) as the child's only CUDA device (CUDA_VISIBLE_DEVICES=0); "
        "a plain process: every GPU of the machine is reachable; GPU memory is not capped"
    )
    assert box.command(["python"])[-1] == "python" and "--dev-bind" not in box.command(["python"])
