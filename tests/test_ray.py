"""mapgen's callables on Ray Data: the same rows as ``datasets.map``, one engine per actor, the shared store,
one rate limit for the whole cluster, and a node lost mid-job.

A local Ray cluster (a head node with 2 CPUs) is started for this module and shut down after it; the
cluster tests add a worker node to it (``ray.cluster_utils.Cluster``: two nodes on this machine, each with
a temporary folder of its own, so that a per-machine limiter cannot pass for a cluster-wide one) and lose
it in the last test.
The backends are the OpenAI-compatible fault server (it answers ``echo: <user message>``; a judge's echo
does not parse, so labelling writes its error column, deterministically) and the embedded llama.cpp model.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import math
import threading
import time
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pytest

import mapgen
from mapgen.integrations.ray import from_columns, to_columns
from mapgen.llms.cluster_limits import CHUNK_SECONDS, ClusterRateLimiter, actor_name, job_namespace
from tests.docs_examples import run_examples

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'mapgen[ray]')")

ROOT = Path(__file__).resolve().parents[1]
INPUTS = [f"Question {i}: what is {i} + {i}?" for i in range(10)]


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster: its head node only, until :func:`worker_node` adds another."""
    from ray.cluster_utils import Cluster

    head = {"num_cpus": 2, "resources": {"mapgen_node": 1}, "include_dashboard": False}
    local = Cluster(initialize_head=True, head_node_args=head)
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


@pytest.fixture(scope="module")
def worker_node(cluster, tmp_path_factory):
    """A second node, with a temporary folder of its own (machines share no files: a limiter per machine
    would not see the head's requests). The head and it each offer one ``mapgen_node`` slot, and the
    cluster tests' actors take one each: one actor on each node."""
    tmp = tmp_path_factory.mktemp("worker-node")
    node = cluster.add_node(num_cpus=1, resources={"mapgen_node": 1}, env_vars={"TMPDIR": str(tmp)})
    cluster.wait_for_nodes()
    context = ray.data.DataContext.get_current()
    context.wait_for_min_actors_s = 600  # a job starts once its whole pool is up: both nodes take part
    yield node
    context.wait_for_min_actors_s = -1


def on_both_nodes(ds, fn, **kwargs):
    """``mapgen.ray.map_batches`` with two actors, one on the head node and one on the worker node."""
    return mapgen.ray.map_batches(ds, fn, concurrency=2, num_cpus=0.5, resources={"mapgen_node": 1}, **kwargs)


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
    from mapgen.core.columns import typed_columns

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


def test_rpm_holds_for_the_whole_cluster(worker_node, fault_server):
    """Two actors on two nodes share one rpm: the server sees the limit, not twice it."""
    fault_server.configure(api_key=fault_server.api_key, latency=0.05)
    rpm, rows = 1200, 80  # 20 requests a second for the whole job: about 4 s
    llm = echo_llm(fault_server, rpm=rpm, max_concurrency=8)
    ds = ray.data.from_items([{"input": f"row {i}"} for i in range(rows)])
    out = rows_of(on_both_nodes(ds, mapgen.generate(llm, cache=False), batch_size=5))

    assert [row["generations"] for row in out] == [[f"echo: row {i}"] for i in range(rows)]
    times = sorted(fault_server.stats(times=True)["times"])
    assert len(times) == rows
    # Server-side arrival times, bounded generously: on a busy machine a request may land late (never
    # early), so a few bunch together; a limit per node would send about twice the limit.
    per_second = rpm / 60
    rate = (len(times) - 1) / (times[-1] - times[0])
    chunk = math.ceil(per_second * CHUNK_SECONDS)  # what one worker leases at once
    busiest = max(bisect.bisect_left(times, t + 1.0) - i for i, t in enumerate(times))
    print(f"rpm {rpm} on two nodes: {rate:.1f} requests/s overall, at most {busiest} in any second")
    assert rate <= 1.5 * per_second, rate
    assert busiest <= per_second + 2 * chunk + per_second / 2, busiest  # + a chunk per worker, + late ones
    assert ray.get_actor(actor_name(llm.rate_limit_key()), namespace=job_namespace())  # the job's budget


def test_workers_of_one_job_get_slots_that_never_overlap(ray_cluster):
    """Three limiters (as in three workers) lease from the job's budget actor at 1200 rpm: the slots they
    are given are 50 ms apart, whichever limiter got them, and the token clock is shared too."""

    async def slots(limiter: ClusterRateLimiter, count: int, tokens: int) -> list[float]:
        return await asyncio.gather(*(limiter.acquire(tokens) for _ in range(count)))

    def worker(rpm: float | None, tpm: float | None, tokens: int, out: list) -> None:
        out.extend(asyncio.run(slots(ClusterRateLimiter("slots-test", rpm=rpm, tpm=tpm), 12, tokens)))

    for rpm, tpm, tokens, interval in ((1200, None, 0, 0.05), (None, 60_000, 50, 0.05)):
        starts: list[float] = []
        threads = [threading.Thread(target=worker, args=(rpm, tpm, tokens, starts)) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        starts.sort()
        assert len(starts) == 36
        assert min(b - a for a, b in itertools.pairwise(starts)) >= interval - 1e-6, (rpm, tpm)


def test_a_node_lost_mid_job_costs_at_most_what_it_had_in_flight(
    cluster, worker_node, fault_server, postgres_server, record_property
):
    """Kill the worker node while its actor has requests in flight: Ray retries its batches on the head's
    actor, and with every node on one PostgreSQL store the retries re-send only what the lost node had not
    yet been answered, so the server sees at most the rows plus the lost node's requests in flight."""
    fault_server.configure(api_key=fault_server.api_key, latency=0.5)
    rows, max_concurrency = 60, 4
    store = postgres_server.new_database()
    llm = echo_llm(fault_server, max_concurrency=max_concurrency)
    ds = ray.data.from_items([{"input": f"lost node, row {i}"} for i in range(rows)])
    ds = on_both_nodes(ds, mapgen.generate(llm), batch_size=4, env={"MAPGEN_STORE": store})
    at_kill: list[dict] = []

    def kill_mid_job() -> None:
        # More requests in flight than one actor may send: both nodes are sending.
        deadline = time.monotonic() + 300
        stats = fault_server.stats()
        while (
            stats["total"] < rows // 4 or stats["in_flight"] <= max_concurrency
        ) and time.monotonic() < deadline:
            time.sleep(0.02)
            stats = fault_server.stats()
        at_kill.append(stats)
        cluster.remove_node(worker_node)

    killer = threading.Thread(target=kill_mid_job, daemon=True)
    killer.start()
    out = rows_of(ds)
    killer.join(timeout=60)

    assert at_kill and at_kill[0]["total"] < rows, "the node is lost before the job ends"
    assert at_kill[0]["in_flight"] > max_concurrency, "...while both nodes have requests in flight"
    assert [row["generations"] for row in out] == [[f"echo: lost node, row {i}"] for i in range(rows)]
    assert all(row["generation_errors"] == [None] for row in out)
    seen = fault_server.stats()["total"]
    in_flight = max_concurrency  # the lost node's one actor, with its requests in flight
    print(f"node lost mid-job: the server saw {seen} requests for {rows} rows, at most {in_flight} in flight")
    record_property("requests_seen", seen)
    record_property("rows", rows)
    record_property("in_flight_on_lost_node", in_flight)
    assert rows <= seen <= rows + in_flight, (seen, rows, in_flight)
