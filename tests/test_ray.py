"""mapgen's callables on Ray Data: the same rows as ``datasets.map``, one engine per actor, the shared store,
one rate limit for the whole cluster, and a node lost mid-job.

A local Ray cluster (a head node with 2 CPUs) is started for this module and shut down after it; the
cluster tests add two worker nodes to it (``ray.cluster_utils.Cluster``: several nodes on this machine,
each with a temporary folder of its own, so that a per-machine limiter cannot pass for a cluster-wide one).
The backends are the OpenAI-compatible fault server (it answers ``echo: <user message>``; a judge's echo
does not parse, so labelling writes its error column, deterministically) and the embedded llama.cpp model.
"""

from __future__ import annotations

import bisect
import math
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pytest

import mapgen
from mapgen.integrations.ray import from_columns, to_columns
from mapgen.integrations.ray_limits import CHUNK_SECONDS, actor_name
from tests.docs_examples import run_examples

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'mapgen[ray]')")

ROOT = Path(__file__).resolve().parents[1]
INPUTS = [f"Question {i}: what is {i} + {i}?" for i in range(10)]


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster: its head node only, until :func:`worker_nodes` adds two more."""
    from ray.cluster_utils import Cluster

    local = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    ray.init(address=local.address, log_to_driver=False, configure_logging=False)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.execution_options.preserve_order = True
    yield local
    ray.shutdown()
    local.shutdown()


@pytest.fixture(scope="module")
def ray_cluster(cluster):
    return ray


WORKER_SLOTS = 2
"""Actors per worker node: each node offers this much of the ``mapgen_node`` resource, each actor takes 1."""


@pytest.fixture(scope="module")
def worker_nodes(cluster, tmp_path_factory) -> list:
    """Two worker nodes, each with its own temporary folder (machines share no files); the actors of the
    cluster tests ask for ``resources={"mapgen_node": 1}``, so they run there, two on each."""
    nodes = []
    for name in ("a", "b"):
        tmp = tmp_path_factory.mktemp(f"node-{name}")
        nodes.append(
            cluster.add_node(
                num_cpus=2, resources={"mapgen_node": WORKER_SLOTS}, env_vars={"TMPDIR": str(tmp)}
            )
        )
    cluster.wait_for_nodes()
    return nodes


def on_worker_nodes(ds, fn, **kwargs):
    """``mapgen.ray.map_batches`` with one actor per ``mapgen_node`` slot: four, two on each worker node."""
    return mapgen.ray.map_batches(
        ds, fn, concurrency=2 * WORKER_SLOTS, num_cpus=0.5, resources={"mapgen_node": 1}, **kwargs
    )


def rows_of(ray_ds) -> list[dict]:
    """The rows of a Ray dataset, as plain Python values, in order."""
    return pa.concat_tables(ray.get(ray_ds.to_arrow_refs())).to_pylist()


def arrow_of(ray_ds) -> pa.Table:
    return pa.concat_tables(ray.get(ray_ds.to_arrow_refs()))


def echo_llm(server, **kwargs):
    return mapgen.OpenAILLM("echo", base_url=server.base_url, api_key=server.api_key, **kwargs)


def test_batch_formats_convert_to_plain_columns_and_back():
    arrow = pa.table({"input": ["a", "b"], "generations": [["x", None], ["y", "z"]]})
    pandas = arrow.to_pandas()
    numpy_batch = {"input": np.array(["a", "b"]), "generations": pandas["generations"].to_numpy()}
    for batch in (arrow, pandas, numpy_batch):
        assert to_columns(batch) == {"input": ["a", "b"], "generations": [["x", None], ["y", "z"]]}
    fn = mapgen.label(mapgen.OpenAILLM("judge", api_key="unused"), mapgen.UltraFeedbackTask.for_helpfulness())
    types = fn.output_types()
    from mapgen.columns import typed_columns

    # All None: a plain list would make these columns "null"; the declared types must survive.
    new = typed_columns({name: [None, None] for name in types}, types)
    out = from_columns(pandas, {**new, "input": ["A", "B"]})
    assert out.column_names == ["input", "generations", *types]
    assert out.column("input").to_pylist() == ["A", "B"]
    for name, kind in types.items():
        assert out.schema.field(name).type == kind


def test_generate_and_label_on_ray_match_datasets_map(ray_cluster, fault_server):
    gen = mapgen.generate(echo_llm(fault_server), num_generations=2, cache=False)
    judge = mapgen.label(echo_llm(fault_server), mapgen.UltraFeedbackTask.for_overall_quality(), cache=False)
    expected = datasets.Dataset.from_dict({"input": INPUTS}).map(gen, batched=True, batch_size=3)
    expected = expected.map(judge, batched=True, batch_size=3)

    ds = ray.data.from_items([{"input": text} for text in INPUTS])
    ds = mapgen.ray.map_batches(ds, gen, concurrency=2, batch_size=3)
    ds = mapgen.ray.map_batches(ds, judge, concurrency=2, batch_size=4)
    table = arrow_of(ds)

    assert table.to_pylist() == expected.to_list()
    assert table.column_names == expected.column_names
    for name in expected.column_names:
        assert table.schema.field(name).type == expected.data.table.schema.field(name).type, name
    generations = table.column("generations").to_pylist()
    assert all(
        len(g) == 2 and all(a.startswith(f"echo: {text}") for a in g)
        for g, text in zip(generations, INPUTS, strict=True)
    )
    assert all(error for error in table.column("labelling_error").to_pylist())  # an echo is no rating


def test_ray_actors_share_the_response_store(ray_cluster, fault_server, tmp_path):
    store = tmp_path / "store"
    gen = mapgen.generate(echo_llm(fault_server), num_generations=2)
    items = [{"input": text} for text in INPUTS]

    first = rows_of(
        mapgen.ray.map_batches(ray.data.from_items(items), gen, concurrency=2, batch_size=3, store_dir=store)
    )
    sent = fault_server.stats()["total"]
    assert sent >= len(INPUTS)  # the backend may ask for both generations in one request
    assert not any(m["from_store"] for row in first for m in row["generation_metadata"])

    again = rows_of(
        mapgen.ray.map_batches(ray.data.from_items(items), gen, concurrency=2, batch_size=5, store_dir=store)
    )
    assert fault_server.stats()["total"] == sent, "a re-run on Ray sends nothing"
    assert all(m["from_store"] for row in again for m in row["generation_metadata"])
    assert [row["generations"] for row in again] == [row["generations"] for row in first]
    assert (store / "responses.sqlite3").exists()


@pytest.mark.llamacpp
def test_embedded_model_on_ray_matches_datasets_map(ray_cluster):
    llm = mapgen.LlamaCppLLM(temperature=0.0, max_new_tokens=8, seed=0, n_threads=1)
    gen = mapgen.generate(llm, num_generations=1, cache=False)
    judge = mapgen.label(
        mapgen.LlamaCppLLM(temperature=0.0, max_new_tokens=24, seed=0, n_threads=1),
        mapgen.UltraFeedbackTask.for_small_models(),
        cache=False,
    )
    inputs = INPUTS[:4]
    expected = datasets.Dataset.from_dict({"input": inputs}).map(gen, batched=True, batch_size=2)
    expected = expected.map(judge, batched=True, batch_size=2)

    ds = ray.data.from_items([{"input": text} for text in inputs])
    ds = mapgen.ray.map_batches(ds, gen, concurrency=2, batch_size=2)
    ds = mapgen.ray.map_batches(ds, judge, concurrency=1, batch_size=2)
    rows = rows_of(ds)
    assert rows == expected.to_list()
    assert all(isinstance(row["generations"][0], str) and row["generations"][0] for row in rows)


@pytest.mark.llamacpp
def test_ray_docs_examples_run(ray_cluster, fault_server):
    """docs/ray.md's examples, on this module's cluster (the docs test skips them: they need one)."""
    ran = run_examples(
        ROOT / "docs" / "ray.md",
        runner="tests/test_ray.py",
        replace={"ray.init()": "pass  # the test's cluster is running"},
    )
    assert ran > 0


def test_rpm_holds_for_the_whole_cluster(worker_nodes, fault_server):
    """Four actors on two nodes share one rpm: the server sees the limit, not four (or two) times it."""
    fault_server.configure(api_key=fault_server.api_key, latency=0.05)
    rpm, rows = 1200, 80  # 20 requests a second for the whole job: about 4 s
    llm = echo_llm(fault_server, rpm=rpm, max_concurrency=8)
    ds = ray.data.from_items([{"input": f"row {i}"} for i in range(rows)])
    out = rows_of(on_worker_nodes(ds, mapgen.generate(llm, cache=False), batch_size=5))

    assert [row["generations"] for row in out] == [[f"echo: row {i}"] for i in range(rows)]
    times = sorted(fault_server.stats(times=True)["times"])
    assert len(times) == rows
    per_second = rpm / 60
    rate = (len(times) - 1) / (times[-1] - times[0])
    chunk = math.ceil(per_second * CHUNK_SECONDS)  # what one worker leases at once
    busiest = max(bisect.bisect_left(times, t + 1.0) - i for i, t in enumerate(times))
    print(f"rpm {rpm}: {rate:.1f} requests/s overall, at most {busiest} in any second (limit {per_second:g})")
    assert rate <= 1.2 * per_second, rate  # per-node limits would give about twice the limit
    assert busiest <= per_second + 2 * WORKER_SLOTS * chunk, busiest  # the budget + one chunk per worker
    assert ray.get_actor(actor_name(llm.rate_limit_key())) is not None  # the job's budget actor
