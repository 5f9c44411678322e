"""The Hugging Face Hub: push a dataset with its mapgen card, and read a Hub dataset for the CLI.

Both go through ``huggingface_hub`` (and ``datasets``, which uses it), so ``HF_ENDPOINT``, ``HF_TOKEN``
and ``HF_HUB_OFFLINE`` apply as everywhere else. A token is passed on, never written to a card, a log
or a message.
"""

from __future__ import annotations

from typing import Any

from mapgen.core.keywords import checked_keywords
from mapgen.report.card import dataset_card


@checked_keywords
def push_to_hub(
    ds: Any,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | None = None,
    store: str | None = None,
    commit_message: str = "Upload dataset made with mapgen",
) -> Any:
    """Push ``ds`` to the Hub dataset repo ``repo_id`` (``ds.push_to_hub``), then its card
    (:func:`mapgen.dataset_card`) as the repo's ``README.md``, with the files it shows beside it (the
    chart of its ratings, ``rating_distribution.svg``, where a label step wrote ratings) in the same commit.
    The card's loading snippet names ``repo_id``.

    The card is built first, so a dataset without mapgen columns fails before anything is uploaded. The
    card keeps the YAML that ``datasets`` writes on push (``dataset_info``, ``configs``), so
    ``load_dataset(repo_id)`` reads the data as before. ``private`` creates a private repo (``None``: the
    Hub's default); ``token`` defaults to ``HF_TOKEN`` / the saved login; ``store`` is where provenance
    records are read (see :func:`mapgen.dataset_card`).

    Returns:
        The :class:`huggingface_hub.CommitInfo` of the card's commit.

    Raises:
        ValueError: ``ds`` has no mapgen column.
        ConnectionError: the Hub cannot be reached (no network, ``HF_HUB_OFFLINE=1``): nothing was
            uploaded; the message names the repo and the endpoint.
        huggingface_hub.errors.HfHubHTTPError: the Hub refused (an unknown user, a bad token: the
            message names the repo, never the token).

    Example (against a Hub, so not run here):
        >>> mapgen.push_to_hub(ds, "me/tips", private=True)  # doctest: +SKIP
    """
    from huggingface_hub import DatasetCard, constants
    from huggingface_hub.errors import EntryNotFoundError

    card = dataset_card(ds, repo_id=repo_id, store=store)
    try:
        ds.push_to_hub(repo_id, private=private, token=token, commit_message=commit_message)
    except Exception as error:
        if not _is_offline(error):
            raise
        raise ConnectionError(
            f"cannot push {repo_id!r}: the Hub at {constants.ENDPOINT} cannot be reached from here "
            f"({type(error).__name__}: {error}). Push from where the network allows, or set HF_ENDPOINT to "
            "your Hub's address; nothing was uploaded."
        ) from None
    try:  # what datasets wrote to the README on push: its data files and features
        pushed = DatasetCard.load(repo_id, repo_type="dataset", token=token).data.to_dict()
    except EntryNotFoundError:
        pushed = {}
    for key in ("configs", "dataset_info"):
        if key in pushed:
            card.data[key] = pushed[key]
    message = "mapgen: dataset card (how each column was made)"
    return card.push_to_hub(repo_id, repo_type="dataset", token=token, commit_message=message)


def load_hub_dataset(repo_id: str, *, split: str | None = None) -> Any:
    """The dataset ``repo_id`` from the Hub (``datasets.load_dataset``), its ``train`` split or the first.

    Raises:
        ConnectionError: the Hub cannot be reached (offline, ``HF_HUB_OFFLINE=1``, no network): the
            message names the repo and the way out (a local file or folder).
    """
    import datasets

    try:
        loaded = datasets.load_dataset(repo_id, split=split)
    except Exception as error:
        if not _is_offline(error):
            raise
        raise ConnectionError(
            f"{repo_id!r} is no local file or folder, and the Hub, where it would be the dataset "
            f"{repo_id!r}, cannot be reached from here ({error}). Download it where the network allows, "
            "save it with save_to_disk, and pass that folder (or a .jsonl/.parquet file) instead."
        ) from None
    if isinstance(loaded, datasets.DatasetDict):
        loaded = loaded["train"] if "train" in loaded else next(iter(loaded.values()))
    return loaded


def _is_offline(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) says the Hub could not be reached: ``datasets`` raises a
    ``ConnectionError`` for offline mode and for a refused connection alike."""
    from huggingface_hub.errors import OfflineModeIsEnabled

    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, (ConnectionError, OfflineModeIsEnabled)):
            return True
        # huggingface_hub's transport (httpx) raises its own ConnectError / ConnectTimeout
        if type(seen).__module__.startswith("httpx") and type(seen).__name__.startswith("Connect"):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
