"""The GPU a scorer hands its child: which device scores, and what of the host CUDA needs in the sandbox.

`scorer.device` is resolved once, in the parent: `auto` is CUDA when torch sees a device here, else
the CPU. The device assigned to a scorer is the first of its own CUDA_VISIBLE_DEVICES (what a job
scheduler sets), else GPU 0; the child gets that one device as its CUDA_VISIBLE_DEVICES, so inside
it is `cuda` (= `cuda:0`) as in the parent. Under bubblewrap the child sees no /dev, /sys or driver
library of the host unless it is bound: the facts are discovered by one function (`discover`) and
turned into arguments by another (`bwrap_args`), so that a test can hand the second a fake machine.
This module imports no torch (the Codabench ingestion program stays light); `resolve_device` does,
lazily, only when it has to ask.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from pathlib import Path

from challenge.errors import ChallengeError

DEVICES = ("auto", "cpu", "cuda")
# The driver's user-space libraries (not the CUDA runtime: torch's wheels carry their own, in site-packages).
_DRIVER_LIBRARIES = ("libcuda.so", "libnvidia-")
_PROBED = ("libcuda.so.1", "libnvidia-ml.so.1")  # loaded here so that /proc/self/maps names their real paths


@dataclass(frozen=True)
class GpuFacts:
    """What of the host the child needs to use the GPU; paths only, so a test can pass any."""

    nodes: tuple[str, ...]  # /dev/nvidia* (nvidiactl, nvidia-uvm, nvidia0, ..., nvidia-caps): bound as devices
    libraries: tuple[str, ...]  # folders of the driver libraries loaded here that the system binds do not cover
    read_only: tuple[
        str, ...
        # what the driver, NVML and CUDA read: /proc/driver/nvidia, /sys/module/nvidia, the CPU and NUMA topology, the
        # GPUs'
        # PCI folders
    ]
    links: tuple[
        tuple[str, str], ...
    ] = ()  # (target, link): /sys/bus/pci/devices/<bus id> -> its folder under /sys/devices


@dataclass(frozen=True)
class Gpu:
    """The one device a child may use: its id on this machine, its name, and what it takes to reach it."""

    visible: str  # the child's CUDA_VISIBLE_DEVICES
    name: str
    facts: GpuFacts

    def line(self, bound: bool) -> str:
        """The sandbox's device line (result.json's `sandbox.device`); `bound`: under bubblewrap, else plain."""
        head = (
            f"cuda: GPU {self.visible} ({self.name}) as the child's only CUDA device "
            f"(CUDA_VISIBLE_DEVICES={self.visible}); "
        )
        if not bound:
            return head + "a plain process: every GPU of the machine is reachable; GPU memory is not capped"
        gpus = sum(1 for n in self.facts.nodes if Path(n).name.removeprefix("nvidia").isdigit())
        return (
            head
            + f"bound: {', '.join(self.facts.nodes) or 'no device node'}; the device nodes of all {gpus} GPU(s) are "
            "bound, so code that "
            "resets CUDA_VISIBLE_DEVICES can reach the others; GPU memory is not capped"
        )


CPU_LINE = "cpu: no GPU is passed in (no /dev/nvidia* bound, CUDA_VISIBLE_DEVICES empty)"


def resolve_device(choice: str, key: str = "scorer.device", shown: str | None = None) -> str:
    """`cpu` or `cuda`; `cuda` on a machine where torch sees no CUDA device is the user's error, in one line
    naming `key` (`device` when challenge.checks checks the config's own setting, `shown` its value there)."""
    if choice not in DEVICES:
        fix = "cpu" if key == "scorer.device" else f"{key}=cpu"
        raise ChallengeError(
            f"{key}={shown or repr(choice)} is not one of {', '.join(DEVICES)}: set {key}=auto (CUDA when present) or "
            f"{fix}"
        )
    if choice == "cpu":
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if choice == "auto":
        return "cpu"
    raise ChallengeError(
        f"{key}=cuda but torch finds no CUDA device on this machine: set {key}=auto (CUDA when present) or {key}=cpu"
    )


def assigned() -> str:
    """This scorer's GPU on the machine: the first of its own CUDA_VISIBLE_DEVICES, else GPU 0."""
    return os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip() or "0"


def gpu_for(device: str) -> Gpu | None:
    """The child's GPU for a resolved device, None on the CPU."""
    if device != "cuda":
        return None
    import torch

    return Gpu(assigned(), torch.cuda.get_device_name(0), discover())


def discover(
    dev: Path = Path("/dev"),
    maps: Path = Path("/proc/self/maps"),
    proc: Path = Path("/proc/driver/nvidia"),
    sys_root: Path = Path("/sys"),
) -> GpuFacts:
    """The NVIDIA device nodes, the driver libraries this process has loaded (it loads them first) and the
    driver's /proc and /sys folders. The arguments are for tests; the defaults are this machine."""
    for name in _PROBED:
        try:
            ctypes.CDLL(name)
        except OSError:
            continue
    nodes = tuple(sorted(str(p) for p in dev.glob("nvidia*")))
    # The CUDA runtime reads the CPUs and NUMA nodes it may pin to (/sys/devices/system/cpu/online, ...): topology,
    # nothing secret.
    system = [sys_root / "devices" / "system" / name for name in ("cpu", "node")]
    read_only = [str(p) for p in (proc, sys_root / "module" / "nvidia", *system) if p.exists()]
    links = []
    for busid in sorted(p.name for p in (proc / "gpus").glob("*")):
        pci = sys_root / "bus" / "pci" / "devices" / busid
        if pci.exists():
            read_only.append(str(pci.resolve()))
            links.append((str(pci.resolve()), str(pci)))
    return GpuFacts(nodes, loaded_library_dirs(maps), tuple(read_only), tuple(links))


def loaded_library_dirs(maps: Path) -> tuple[str, ...]:
    """Folders of the driver libraries mapped into this process, as /proc/PID/maps names them."""
    try:
        lines = maps.read_text().splitlines()
    except OSError:
        return ()
    dirs: list[str] = []
    for line in lines:
        path = line.split(maxsplit=5)[5] if len(line.split(maxsplit=5)) == 6 else ""
        if (
            path.startswith("/")
            and Path(path).name.startswith(_DRIVER_LIBRARIES)
            and str(Path(path).parent) not in dirs
        ):
            dirs.append(str(Path(path).parent))
    return tuple(dirs)


def bwrap_args(facts: GpuFacts, covered: tuple[str, ...]) -> list[str]:
    """bubblewrap arguments that give the child the GPU: device nodes as devices, the rest read-only.

    `covered`: folders already bound (the system's), whose libraries need no bind of their own.
    """
    args: list[str] = []
    for node in facts.nodes:
        args += ["--dev-bind", node, node]
    for folder in facts.libraries:
        if not _under(folder, covered):
            args += ["--ro-bind", folder, folder]
    for path in facts.read_only:
        args += ["--ro-bind", path, path]
    for target, link in facts.links:
        args += ["--symlink", target, link]
    return args


def new_folders(facts: GpuFacts) -> list[str]:
    """The destinations bubblewrap must create folders above (in its own root, not in /dev or /proc)."""
    return [p for p in (*facts.read_only, *(link for _, link in facts.links)) if not p.startswith(("/dev/", "/proc/"))]


def library_path(facts: GpuFacts) -> str:
    """LD_LIBRARY_PATH for the child: the driver's folders as found here, which the loader's cache may not hold
    (a container's /usr/local/nvidia/lib64, found through our own LD_LIBRARY_PATH)."""
    return ":".join(facts.libraries)


def _under(path: str, folders: tuple[str, ...]) -> bool:
    return any(path == f or path.startswith(f.rstrip("/") + "/") for f in folders)
