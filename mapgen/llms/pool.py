"""``LLMPool``: several LLMs answer one map, each row's generations spread over them reproducibly.

How the members run:

- **API members** (``OpenAILLM``, ``InferenceEndpointsLLM``) and CPU members run in the map's process,
  each member's share of a batch at the same time (one thread per member; API requests run on the
  process's event loop).
- **Local GPU members** (``vLLM``, ``TransformersLLM``, ``LlamaCppLLM`` with GPU offload), when there are
  two or more (or with ``processes=True``), each run in a process of their own that loads the model once,
  on GPUs of its own, and serves every batch the map sends it: the seed's ``ProcessLLM``. The map's
  worker sends each member its share of a batch and all members generate at the same time. The member
  processes are started with ``subprocess`` (a fresh interpreter, so CUDA is never inherited across a
  fork) with ``CUDA_VISIBLE_DEVICES`` set to the member's GPUs; the map's process never touches CUDA.

GPU placement: the pool needs, per map worker, the sum of its process members' ``gpus_per_worker``.
Rank ``r`` (``None`` counts as 0) takes the ``r``-th such slice of the parent's visible GPUs and hands
member ``k`` its part, in order; a member's own ``devices=`` list overrides. So four 7B models on four
GPUs is ``ds.map(generate(LLMPool([vLLM(a), vLLM(b), vLLM(c), vLLM(d)]), task, 4), batched=True)``, and
eight GPUs run two such pools with ``num_proc=2, with_rank=True``.
"""

from __future__ import annotations

import atexit
import dataclasses
import hashlib
import json
import os
import pickle
import random
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, Any, ClassVar

from mapgen.core.config import knob
from mapgen.core.request import Completion, OnComplete, Request
from mapgen.llms._sampling import SAMPLING_PARAMETERS
from mapgen.llms.base import LLM, LocalLLM
from mapgen.llms.devices import VISIBLE, device_group, original_visible


class OfMembers:
    """What an LLM made of ``members`` (a pool, a jury) can do: what every member can, and constrain
    answers where any member does (each member gets the schema only if it does). Its name is ``KIND``
    followed by the members' names."""

    KIND: ClassVar[str]
    members: Sequence[LLM]

    @property
    def model_name(self) -> str:
        return f"{self.KIND}(" + ", ".join(member.model_name for member in self.members) + ")"

    @property
    def supports_schema(self) -> bool:
        return any(member.supports_schema for member in self.members)

    @property
    def supports_logprobs(self) -> bool:
        return all(member.supports_logprobs for member in self.members)

    @property
    def supports_images(self) -> bool:
        return all(member.supports_images for member in self.members)

    @property
    def supports_continue_final_message(self) -> bool:
        return all(member.supports_continue_final_message for member in self.members)


@dataclass(frozen=True)
class LLMPool(OfMembers, LLM):
    """Several LLMs as one: each row's ``num_generations`` come from the members, spread evenly (the
    remainder by chance), in an order chosen per row from ``seed`` and the row's prompt, so the same
    row gets the same members in every run, under any ``num_proc`` and batch size. Each answer's
    ``generation_model`` names the member that wrote it. Sampling parameters are the members' own.

    Example:
        >>> import mapgen
        >>> pool = mapgen.LLMPool([mapgen.LlamaCppLLM(seed=0), mapgen.LlamaCppLLM(seed=1, temperature=1.0)])
        >>> [pool.member_for(mapgen.Request(mapgen.Prompt("Hi"), i)) for i in range(4)]
        [0, 1, 0, 1]
    """

    KIND: ClassVar[str] = "pool"

    members: tuple[LLM, ...]
    _: dataclasses.KW_ONLY
    seed: int | None = 0
    processes: bool | None = knob(None)
    """Run local members in processes of their own: ``None`` does so when two or more use GPUs."""

    store_name: ClassVar[str] = "mapgen.LLMPool"
    """The ``type`` its fingerprint has always had: kept, so that stores written before serve on."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "members", tuple(self.members))
        if not self.members:
            raise ValueError("LLMPool needs at least one member LLM.")
        defaults = {f.name: f.default for f in dataclasses.fields(LLM)}
        own = sorted(
            name
            for name in (*SAMPLING_PARAMETERS, "temperature", "top_p", "max_new_tokens")
            if getattr(self, name) != defaults[name]
        )
        if own:  # the pool samples nothing itself: on it they would be dropped
            raise ValueError(f"LLMPool takes no sampling parameters ({own}): set them on its members.")
        if (
            self.price_per_million is not None
        ):  # each member is priced as itself (mapgen.mapping.map_function.spent)
            raise ValueError("LLMPool takes no price_per_million: set it on the members it prices.")
        for member in self.members:
            # A jury is the other OfMembers (mapgen.llms.jury imports this module, so it is named by its
            # base): it rates, and its complete() would refuse only once a batch came, maybe after other
            # members had sent requests.
            if isinstance(member, OfMembers) and not isinstance(member, LLMPool):
                raise TypeError(
                    "a Jury rates: pass it to mapgen.label(jury, task); to spread generations over several "
                    "LLMs, use mapgen.LLMPool."
                )
            if not isinstance(member, LLM) or isinstance(member, LLMPool):
                raise TypeError(f"LLMPool members must be mapgen LLMs (not pools), got {member!r}.")
        identities = {
            json.dumps(member.fingerprint(), sort_keys=True, default=repr) for member in self.members
        }
        if len(identities) < len(self.members):
            raise ValueError("LLMPool members must differ (two equal configs would write the same answers).")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise TypeError(f"seed must be an int, got {self.seed!r}.")

    @property
    def concurrent_batches(self) -> bool:
        return all(getattr(member, "concurrent_batches", False) for member in self.members)

    def describe_prompt_format(self) -> str:
        """Each member's own, by model name."""
        return "; ".join(f"{m.model_name}: {m.describe_prompt_format()}" for m in self.members)

    def fingerprint(self) -> dict[str, Any]:
        return {
            "type": "mapgen.LLMPool",
            "members": [member.fingerprint() for member in self.members],
            "seed": self.seed,
        }

    def store_fingerprint(self) -> dict[str, Any]:
        # Its members by their store names too: moving a member's module keeps the pool's answers.
        members = [member.store_fingerprint() for member in self.members]
        return {**self.fingerprint(), "type": self.store_name, "members": members}

    def preflight(self) -> None:
        for member in self.members:
            member.preflight()

    # Who answers what.

    def member_for(self, request: Request) -> int:
        """The member that answers ``request``: generation ``i`` of a row goes to the ``i``-th member of
        the row's own shuffled order (then around again)."""
        identity = json.dumps([self.seed, *request.prompt.identity()], sort_keys=True)
        digest = int.from_bytes(hashlib.sha256(identity.encode()).digest()[:8], "big")
        order = list(range(len(self.members)))
        random.Random(digest).shuffle(order)
        return order[request.index % len(order)]

    def in_process(self, k: int) -> bool:
        """Whether member ``k`` runs in the map's process (else in a member process of its own)."""
        member = self.members[k]
        if not isinstance(member, LocalLLM) or self.processes is False:
            return True
        if self.processes:
            return False
        gpu_members = [m for m in self.members if isinstance(m, LocalLLM) and m.uses_gpu]
        return not (member.uses_gpu and len(gpu_members) >= 2)

    def member_devices(self, rank: int | None) -> list[tuple[str, ...] | None]:
        """The GPUs of each member process for map rank ``rank`` (``None`` for in-process members)."""
        separate = [k for k in range(len(self.members)) if not self.in_process(k)]
        local = {k: m for k in separate if isinstance(m := self.members[k], LocalLLM)}  # (all of them)
        sizes = {k: m.gpus_per_worker for k, m in local.items() if m.uses_gpu}
        shared = [k for k in sizes if local[k].devices is None]
        total = sum(sizes[k] for k in shared)
        share = device_group(rank or 0, per_worker=total, available=original_visible()) if total else ()
        placed: list[tuple[str, ...] | None] = [None] * len(self.members)
        offset = 0
        for k, size in sizes.items():
            member = local[k]
            if member.devices is not None:
                placed[k] = device_group(rank or 0, per_worker=size, available=member.devices)
            else:
                placed[k] = share[offset : offset + size]
                offset += size
        return placed

    # Running.

    def load_engine(self, rank: int | None) -> dict[int, MemberProcess]:
        """Start the member processes (all at once: they load their models at the same time)."""
        placed = self.member_devices(rank)
        return {
            k: MemberProcess(self.members[k], placed[k])
            for k in range(len(self.members))
            if not self.in_process(k)
        }

    def complete(
        self,
        requests: Sequence[Request],
        *,
        rank: int | None = None,
        on_complete: OnComplete | None = None,
    ) -> list[Completion]:
        """Send each member its share of ``requests``, all members at the same time."""
        if not requests:
            return []
        shares: dict[int, list[int]] = {}
        for position, request in enumerate(requests):
            shares.setdefault(self.member_for(request), []).append(position)
        processes = self.engine(rank) if any(not self.in_process(k) for k in shares) else {}
        results: list[Completion | None] = [None] * len(requests)
        lock = threading.Lock()

        def run(k: int, positions: list[int]) -> None:
            member = self.members[k]
            share = [_for_member(requests[i], member) for i in positions]

            def deliver(j: int, completion: Completion) -> None:
                completion.model = member.model_name
                with lock:
                    if results[positions[j]] is None:
                        results[positions[j]] = completion
                        if on_complete is not None:
                            on_complete(positions[j], completion)

            if k in processes:
                processes[k].complete(share, deliver)
            else:
                # Passed on as each answer arrives, so the response store keeps it at once.
                answers = member.complete(share, rank=rank, on_complete=deliver)
                for j, completion in enumerate(answers):
                    deliver(j, completion)  # a no-op for those already delivered

        if len(shares) == 1:
            [(k, positions)] = shares.items()
            run(k, positions)
        else:
            with ThreadPoolExecutor(max_workers=len(shares), thread_name_prefix="mapgen-pool") as threads:
                for future in [threads.submit(run, k, positions) for k, positions in shares.items()]:
                    future.result()  # a member's exception (misconfiguration) stops the map
        return [c if c is not None else Completion.failed("no answer") for c in results]


def _for_member(request: Request, member: LLM) -> Request:
    if request.schema is not None and not member.supports_schema:
        return dataclasses.replace(request, schema=None)
    return request


class MemberProcess:
    """One pool member served by a process of its own (a fresh interpreter running :func:`_serve`) that
    loads the model once, on ``devices``, and answers :meth:`complete` calls over a pipe (pickles)."""

    def __init__(self, member: LLM, devices: tuple[str, ...] | None) -> None:
        env = dict(os.environ)
        if devices is not None:
            env[VISIBLE] = ",".join(devices)
        self.devices = devices
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from mapgen.llms.pool import _serve; _serve()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        assert self.process.stdin is not None and self.process.stdout is not None  # (both PIPE)
        self.stdin, self.stdout = self.process.stdin, self.process.stdout
        self._lock = threading.Lock()
        self.owner = os.getpid()  # a forked child must not close its parent's members
        _send(self.stdin, ("load", member))
        _STARTED.append(self)

    def complete(self, requests: list[Request], deliver: Callable[[int, Completion], None]) -> None:
        """Stream each answer to ``deliver`` as the member sends it, then all of them again at the end
        (``deliver`` ignores repeats) for backends that answer only at the end."""
        with self._lock:  # one batch at a time per member process
            _send(self.stdin, ("complete", requests))
            while True:
                message = _receive(self.stdout)
                if message is None:
                    raise RuntimeError(
                        f"a pool member process exited with {self.process.wait()}; see its error output above"
                    )
                kind, *payload = message
                if kind == "answer":
                    deliver(*payload)
                elif kind == "done":
                    for j, completion in enumerate(payload[0]):
                        deliver(j, completion)
                    return
                elif kind == "error":
                    raise RuntimeError(f"pool member failed: {payload[0]}")

    def info(self) -> dict[str, Any]:
        """The member process's id and ``CUDA_VISIBLE_DEVICES`` (after its model has loaded)."""
        with self._lock:
            _send(self.stdin, ("info", None))
            message = _receive(self.stdout)
        if not message or message[0] != "info":
            raise RuntimeError(f"pool member process answered {message!r}")
        return message[1]

    def close(self) -> None:
        if os.getpid() == self.owner and self.process.poll() is None:
            try:
                self.stdin.close()  # the member exits on end of input
                self.process.wait(timeout=30)
            except Exception:
                self.process.kill()


_STARTED: list[MemberProcess] = []


@atexit.register
def _close_members() -> None:
    for member in _STARTED:
        member.close()


def _send(stream: IO[bytes], message: Any) -> None:
    pickle.dump(message, stream, protocol=pickle.HIGHEST_PROTOCOL)
    stream.flush()


def _receive(stream: IO[bytes]) -> Any:
    try:
        return pickle.load(stream)
    except EOFError:
        return None


def _serve() -> None:
    """The member process: load the member's engine, then answer until the pipe closes."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # libraries that print must not write into the pipe
    source = sys.stdin.buffer
    member: LLM | None = None
    while True:
        message = _receive(source)
        if message is None:
            return
        kind, payload = message
        try:
            if kind == "load":
                member = payload
                member.engine(None)  # load now, while the other members load theirs
                continue
            if kind == "info":
                _send(out, ("info", {"pid": os.getpid(), "visible": os.environ.get(VISIBLE)}))
                continue
            assert member is not None

            def answer(j: int, completion: Completion) -> None:
                _send(out, ("answer", j, completion))

            answers = member.complete(payload, rank=None, on_complete=answer)
            _send(out, ("done", answers))
        except Exception as error:
            _send(out, ("error", f"{type(error).__name__}: {error}"))
