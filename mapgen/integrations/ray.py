"""Ray Data: run mapgen's callables over a ``ray.data.Dataset``, one engine or client per actor.

``mapgen.ray.map_batches(ds, fn, concurrency=N)`` is ``ds.map_batches`` with a pool of ``N`` stateful
actors (``ray.data.ActorPoolStrategy``), each holding ``fn``: the callable of :func:`mapgen.generate`,
:func:`mapgen.label` or :func:`mapgen.pipeline`, unchanged. An LLM config builds its engine or client on
first use in the process that calls it, so each actor loads its model once and reuses it for every batch
(``num_gpus=1`` per actor for vLLM; the GPU is the one Ray assigns, through ``CUDA_VISIBLE_DEVICES``).

Batches are converted between Ray's formats and the plain column dicts mapgen's callables take: an Arrow
table (or a pandas DataFrame, or a dict of NumPy arrays) becomes ``{column: list}``; the columns the
callable returns are built into Arrow with their declared types and added to the batch's own columns
(replacing any of the same name), so the result has the same columns and types as a ``datasets.map``.

``rpm``/``tpm`` limits hold for the whole job: the actors lease their budget from one Ray actor per
rate-limit key (:mod:`mapgen.llms.cluster_limits`), placed on the driver's node.

The response store (:mod:`mapgen.store`) serves the actors as it serves ``num_proc`` workers: every
answer is committed as it arrives, and a re-run re-sends only what is missing. The actors use the store
in ``store_dir`` (default: the driver's ``$MAPGEN_CACHE_DIR`` / ``~/.cache/mapgen``, passed to each actor
explicitly, since Ray workers do not see environment changes made after ``ray.init``). On several
machines that path is each node's own disk: per-node stores, each reused by later runs whose batches land
on the same node. SQLite's WAL mode needs shared memory between its writers, so do not point the store
at a network filesystem (NFS, SMB) shared by nodes; for reuse across nodes, run on one node, or give each
node the same local path and accept per-node reuse.

Example:
    >>> import ray, mapgen  # doctest: +SKIP
    >>> ds = ray.data.from_items([{"input": "Name a fruit."}, {"input": "Name a colour."}])  # doctest: +SKIP
    >>> llm = mapgen.LlamaCppLLM(max_new_tokens=16, seed=0)  # doctest: +SKIP
    >>> fn = mapgen.generate(llm, num_generations=2)  # doctest: +SKIP
    >>> ds = mapgen.ray.map_batches(ds, fn, concurrency=2, batch_size=8)  # doctest: +SKIP
    >>> ds.take(1)[0]["generations"]  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from mapgen.core.optional import optional_import
from mapgen.core.paths import cache_dir
from mapgen.llms.cluster_limits import NODE_ENV
from mapgen.llms.ratelimit import SCOPE_ENV

if TYPE_CHECKING:
    import ray.data

__all__ = ["MapgenActor", "from_columns", "map_batches", "to_columns"]


def to_columns(batch: Any) -> dict[str, list[Any]]:
    """A Ray batch (Arrow table, pandas DataFrame or dict of NumPy arrays) as ``{column: list}`` of
    plain Python values (nested lists and dicts, not arrays), what mapgen's callables read.

    Example:
        >>> import numpy as np
        >>> to_columns({"input": np.array(["a", "b"]), "n": np.array([1, 2])})
        {'input': ['a', 'b'], 'n': [1, 2]}
    """
    return _to_table(batch).to_pydict()


def from_columns(batch: Any, new: Mapping[str, Any]) -> pa.Table:
    """``batch``'s columns plus ``new`` (a callable's result), as an Arrow table.

    ``new``'s values keep the Arrow types mapgen declares for them (its column lists convert themselves
    through ``__arrow_array__``); a column of ``batch`` with the same name is replaced.

    Example:
        >>> table = from_columns(pa.table({"input": ["a"]}), {"generations": [["x", None]]})
        >>> table.column_names, table.to_pylist()
        (['input', 'generations'], [{'input': 'a', 'generations': ['x', None]}])
    """
    table = _to_table(batch)
    for name, values in new.items():
        array = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values)
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name, array)
        else:
            table = table.append_column(name, array)
    return table


def _to_table(batch: Any) -> pa.Table:
    if isinstance(batch, pa.Table):
        return batch
    if isinstance(batch, Mapping):
        return pa.table({name: _to_array(values) for name, values in batch.items()})
    if type(batch).__module__.startswith("pandas"):
        return pa.Table.from_pandas(batch, preserve_index=False)
    raise TypeError(f"a Ray batch must be a pyarrow Table, a pandas DataFrame or a dict, got {type(batch)}.")


def _to_array(values: Any) -> pa.Array:
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # object arrays of NumPy arrays (list columns)
        return pa.array([_plain(v) for v in values])


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class MapgenActor:
    """A Ray Data actor holding one mapgen callable: it converts each batch, calls ``fn`` with it (no
    rank: Ray places the actor and its GPUs), and adds the returned columns to the batch.

    ``env`` is set in the actor's process before anything runs (the store's ``MAPGEN_CACHE_DIR``).
    """

    def __init__(self, fn: Callable[..., Mapping[str, Any]], env: Mapping[str, str] | None = None) -> None:
        os.environ.update(env or {})
        self.fn = fn

    def __call__(self, batch: Any) -> pa.Table:
        return from_columns(batch, self.fn(to_columns(batch)))


def map_batches(
    ds: ray.data.Dataset,
    fn: Callable[..., Mapping[str, Any]],
    *,
    concurrency: int | tuple[int, int] = 1,
    batch_size: int = 64,
    num_gpus: float | None = None,
    num_cpus: float | None = None,
    store_dir: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    **ray_kwargs: Any,
) -> ray.data.Dataset:
    """``ds.map_batches`` with ``fn`` (a mapgen callable) on a pool of stateful actors.

    ``concurrency`` is the number of actors (``(min, max)`` for an autoscaling pool); each builds ``fn``'s
    engine or client once. ``num_gpus`` is per actor (``1`` for a vLLM engine on one GPU, the
    tensor-parallel size for more); ``num_cpus`` per actor too (Ray's default is 1). ``store_dir`` is the
    response store's folder for the actors (default: this process's, see the module docs); ``env`` adds
    environment variables for the actors (API keys the driver has in its environment are not passed on
    unless you name them here or in Ray's ``runtime_env``). Other keyword arguments go to
    ``ds.map_batches``. Lazy, like every Ray Data transform: nothing runs until the dataset is consumed.

    Example:
        >>> ds = mapgen.ray.map_batches(ds, mapgen.label(judge, task), concurrency=4)  # doctest: +SKIP
    """
    optional_import("ray.data", "ray", "mapgen.ray")  # names the extra where Ray Data is missing
    import ray.data

    if isinstance(concurrency, int):
        compute = ray.data.ActorPoolStrategy(size=concurrency)
    else:
        low, high = concurrency
        compute = ray.data.ActorPoolStrategy(min_size=low, max_size=high)
    actor_env = {"MAPGEN_CACHE_DIR": str(Path(store_dir) if store_dir else cache_dir().resolve())}
    if os.environ.get("MAPGEN_STORE"):  # one store for every node (postgresql://...): see mapgen.store
        actor_env["MAPGEN_STORE"] = os.environ["MAPGEN_STORE"]
    actor_env.update(env or {})
    actor_env.setdefault(SCOPE_ENV, "ray")  # rpm/tpm for the whole job, not per node
    if ray.is_initialized():  # the rate-limit actors run beside the driver, which the job cannot lose
        actor_env.setdefault(NODE_ENV, ray.get_runtime_context().get_node_id())
    options: dict[str, Any] = {"num_gpus": num_gpus, "num_cpus": num_cpus}
    return ds.map_batches(
        MapgenActor,
        fn_constructor_kwargs={"fn": fn, "env": actor_env},
        batch_format="pyarrow",
        batch_size=batch_size,
        compute=compute,
        **{k: v for k, v in options.items() if v is not None},
        **ray_kwargs,
    )
