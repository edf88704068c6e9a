"""``ap2o-build push`` against a real HTTP server on 127.0.0.1 that speaks the part of the Hub API
an upload uses (``hub_standin.FakeHub``: create repo, validate the card's YAML, preupload, tree
listing, commit with additions and deletions, pull requests): the files that arrive must be the
folder's, byte for byte, and nothing else under ``data/`` may stay behind; refusals and unreachable
or offline hubs must end as one clear error line and exit 2, never a traceback."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pyarrow as pa
import pytest
from hub_standin import FakeHub
from synthetic_samples import humaneval_samples

from builder.dataset.assemble import write_configs
from builder.dataset.card import CardConfig, write_card
from builder.dataset.publish import PushConfig, push
from builder.errors import UserError


@pytest.fixture(autouse=True)
def online(monkeypatch):
    """In-process pushes talk to the stand-in Hub: lift the suite's offline mode for them (the
    subprocess tests set HF_HUB_OFFLINE themselves)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("push") / "ap2o-tiny"
    write_configs(pa.concat_tables([humaneval_samples(5), humaneval_samples(3, split="test")]), out, progress=False)
    write_card(out)  # no repo id: the card says your-username/ap2o-tiny
    return out


@pytest.fixture
def folder(built, tmp_path) -> pathlib.Path:
    """A copy per test: a push rewrites the card in place."""
    return pathlib.Path(shutil.copytree(built, tmp_path / built.name))


def _push_cli(folder: pathlib.Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_HOME": str(folder.parent / "hf-home"), **env}
    if "HF_TOKEN" not in env:  # the "no token" case: nothing inherited either
        full_env.pop("HF_TOKEN", None)
    return subprocess.run([sys.executable, "-m", "builder.cli", "push", str(folder), *args],
                          check=False, capture_output=True, text=True, env=full_env, timeout=120)


def test_push_uploads_every_file_of_the_folder(folder):
    with FakeHub() as hub:
        proc = _push_cli(folder, "--repo-id", "me/ap2o-tiny", "--private", "--endpoint", hub.url,
                         env={"HF_TOKEN": "hf_test_token"})
    assert proc.returncode == 0, proc.stderr
    assert "pushed" in proc.stdout
    local = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert hub.files["me/ap2o-tiny"] == local
    assert [(c["organization"], c["name"], c["type"], c["visibility"]) for c in hub.created] == [
        ("me", "ap2o-tiny", "dataset", "private")]
    assert all(auth == "Bearer hf_test_token" for *_, auth in hub.requests)


def test_refused_token_is_one_clear_error(folder):
    with FakeHub(refuse=True) as hub:
        proc = _push_cli(folder, "--repo-id", "me/ap2o-tiny", "--endpoint", hub.url, env={"HF_TOKEN": "hf_bad"})
    assert proc.returncode == 2
    assert "refused the token (HTTP 401)" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unreachable_hub_is_one_clear_error(folder):
    with FakeHub() as hub:  # take a free port, then close it: nothing listens there
        url = hub.url
    proc = _push_cli(folder, "--repo-id", "me/ap2o-tiny", "--endpoint", url, env={"HF_TOKEN": "hf_x"})
    assert proc.returncode == 2
    assert "cannot reach" in proc.stderr and "Traceback" not in proc.stderr


def test_offline_mode_and_missing_token_fail_before_any_request(folder):
    proc = _push_cli(folder, "--repo-id", "me/ap2o-tiny", env={"HF_HUB_OFFLINE": "1", "HF_TOKEN": "hf_x"})
    assert proc.returncode == 2 and "offline mode" in proc.stderr
    with FakeHub() as hub:
        proc = _push_cli(folder, "--repo-id", "me/ap2o-tiny", "--endpoint", hub.url, env={})
    assert proc.returncode == 2 and "no Hugging Face token" in proc.stderr
    assert hub.requests == []


def test_not_a_dataset_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no README.md"):
        push(tmp_path / "empty", PushConfig(repo_id="me/x", token="hf_x"))
    with pytest.raises(UserError, match="no such dataset folder"):
        push(tmp_path / "missing", PushConfig(repo_id="me/x", token="hf_x"))


# --- what a push leaves on the Hub (issue 11 item 2) ---------------------------------------------

def _with_samples_in_shards(folder: pathlib.Path, count: int, monkeypatch) -> pathlib.Path:
    """``folder`` with its samples splits rewritten as ``count`` shards each, and the card redone
    (its dataset_info records the rows per split, as a real build's does)."""
    from builder.dataset import shards

    monkeypatch.setattr(shards, "_BATCH_BYTES", 1024)  # batches small enough to cut many shards
    for split in shards.splits(folder, "samples"):
        table = shards.read_split(folder, "samples", split)
        shards.write_split(folder, "samples", split, table, table.schema,
                           max_shard_bytes=table.nbytes // count + 1 if count > 1 else shards.MAX_SHARD_BYTES)
    write_card(folder, CardConfig(repo_id="me/ap2o-tiny"))
    return folder


def _api_push(folder: pathlib.Path, hub: FakeHub, **kw) -> object:
    return push(folder, PushConfig(repo_id="me/ap2o-tiny", endpoint=hub.url, token="hf_x", **kw))


def test_published_card_names_the_repo_it_is_in(folder):
    assert "your-username/ap2o-tiny" in (folder / "README.md").read_text()
    with FakeHub() as hub:
        result = _api_push(folder, hub)
    card = hub.files["me/ap2o-tiny"]["README.md"].decode()
    assert result.card_rewritten
    assert "your-username" not in card
    assert card.count('load_dataset("me/ap2o-tiny"') >= 6  # the default config + one per config


def test_repush_with_fewer_shards_deletes_the_stale_ones_and_loads(folder, tmp_path, monkeypatch):
    import datasets

    from builder.dataset import shards

    many = _with_samples_in_shards(folder, 3, monkeypatch)
    first = set()
    with FakeHub() as hub:
        _api_push(many, hub)
        first = set(hub.files["me/ap2o-tiny"])
        assert len([p for p in first if p.startswith("data/samples/train-")]) >= 3
        one = tmp_path / "again" / "ap2o-tiny"
        shutil.copytree(many, one)
        _with_samples_in_shards(one, 1, monkeypatch)
        _api_push(one, hub)
    local = {p.relative_to(one).as_posix(): p.read_bytes() for p in one.rglob("*") if p.is_file()}
    assert hub.files["me/ap2o-tiny"] == local  # nothing stale left
    assert set(hub.commits[-1]["deleted"]) == {p for p in first - set(local) if p.startswith("data/")}
    mirror = tmp_path / "download" / "ap2o-tiny"  # what a user downloads from the repo
    for name, data in hub.files["me/ap2o-tiny"].items():
        (mirror / name).parent.mkdir(parents=True, exist_ok=True)
        (mirror / name).write_bytes(data)
    ds = datasets.load_dataset(str(mirror), "samples", split="train", cache_dir=str(tmp_path / "cache"))
    assert len(ds) == shards.read_split(one, "samples", "train").num_rows


def test_files_the_owner_added_outside_data_are_kept(folder):
    with FakeHub() as hub:
        hub.files["me/ap2o-tiny"] = {"NOTES.md": b"mine", "data/old/train-00000-of-00001.parquet": b"stale"}
        _api_push(folder, hub)
    assert hub.files["me/ap2o-tiny"]["NOTES.md"] == b"mine"
    assert "data/old/train-00000-of-00001.parquet" not in hub.files["me/ap2o-tiny"]


def test_create_pr_leaves_main_alone_and_says_where_the_pr_is(folder):
    with FakeHub() as hub:
        hub.files["me/ap2o-tiny"] = {"README.md": b"old card"}
        proc = _push_cli(folder, "--repo-id", "me/ap2o-tiny", "--endpoint", hub.url, "--create-pr",
                         "--commit-message", "Rebuild with 20 answers per problem", env={"HF_TOKEN": "hf_x"})
    assert proc.returncode == 0, proc.stderr
    assert hub.files["me/ap2o-tiny"] == {"README.md": b"old card"}
    [pr] = hub.prs["me/ap2o-tiny"]
    assert pr["summary"] == "Rebuild with 20 answers per problem"
    assert set(pr["added"]) == {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert f"{hub.url}/datasets/me/ap2o-tiny/discussions/1" in proc.stdout


def test_commit_message_is_the_commits(folder):
    with FakeHub() as hub:
        _api_push(folder, hub, commit_message="Fix the card")
    assert [c["summary"] for c in hub.commits] == ["Fix the card"]


def test_dry_run_sends_nothing_and_lists_files_with_sizes(folder):
    card_before = (folder / "README.md").read_bytes()
    with FakeHub() as hub:
        proc = _push_cli(folder, "--repo-id", "me/ap2o-tiny", "--endpoint", hub.url, "--dry-run",
                         env={"HF_TOKEN": "hf_x"})
    assert proc.returncode == 0, proc.stderr
    assert hub.requests == []
    assert (folder / "README.md").read_bytes() == card_before  # not rewritten either
    out = proc.stdout
    assert "nothing was sent" in out and "the card would be rewritten" in out
    for p in folder.rglob("*"):
        if p.is_file():
            assert f"  {p.relative_to(folder).as_posix()}" in out
    assert "data/**" in out and "not listed in a dry run" in out


def test_dry_run_needs_no_token_and_no_network(folder):
    proc = _push_cli(folder, "--repo-id", "me/ap2o-tiny", "--dry-run", env={"HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr
    assert "would" in proc.stdout


def test_repo_id_without_owner_is_one_clear_error(folder):
    with pytest.raises(UserError, match="expected OWNER/NAME"):
        push(folder, PushConfig(repo_id="ap2o-tiny", token="hf_x", dry_run=True))


def test_create_pr_with_a_branch_is_one_clear_error(folder):
    with pytest.raises(UserError, match="--create-pr opens a pull request against main"):
        push(folder, PushConfig(repo_id="me/ap2o-tiny", token="hf_x", create_pr=True, revision="dev"))


# --- a card edited on the Hub (issue 21) ------------------------------------------------------------

def _edited_on_the_hub(card: str) -> str:
    """``card`` as a person edits it on the Hub: a licence changed in the YAML, a line added to the text."""
    import re

    head, body = card.split("\n---\n", 1)
    return re.sub(r"^license: .*$", "license: apache-2.0", head, flags=re.MULTILINE) + "\n---\n" + body.replace(
        "## Summary", "Curated by hand on the Hub.\n\n## Summary", 1)


def _yaml_of(text: str) -> dict:
    from huggingface_hub import DatasetCard

    return DatasetCard(text).data.to_dict()


def test_a_card_edited_on_the_hub_keeps_its_text_and_yaml_and_gets_the_datas(folder, tmp_path, monkeypatch):
    import datasets

    with FakeHub() as hub:
        _api_push(folder, hub)
        edited = _edited_on_the_hub(hub.files["me/ap2o-tiny"]["README.md"].decode())
        hub.files["me/ap2o-tiny"]["README.md"] = edited.encode()
        rebuilt = _with_samples_in_shards(folder, 2, monkeypatch)  # other files, other dataset_info
        ours = (rebuilt / "README.md").read_text()
        result = _api_push(rebuilt, hub)
        remote = hub.files["me/ap2o-tiny"]["README.md"].decode()
    assert result.card_merged
    assert "Curated by hand on the Hub." in remote and _yaml_of(remote)["license"] == "apache-2.0"
    assert _yaml_of(remote)["configs"] == _yaml_of(ours)["configs"]
    assert _yaml_of(remote)["dataset_info"] == _yaml_of(ours)["dataset_info"] != _yaml_of(edited)["dataset_info"]
    assert list(_yaml_of(remote))[:3] == list(_yaml_of(edited))[:3]  # the editor's order
    assert (rebuilt / "README.md").read_text() == remote  # the folder holds what the repo holds
    mirror = tmp_path / "download" / "ap2o-tiny"
    for name, data in hub.files["me/ap2o-tiny"].items():
        (mirror / name).parent.mkdir(parents=True, exist_ok=True)
        (mirror / name).write_bytes(data)
    assert len(datasets.load_dataset(str(mirror), "samples", split="train", cache_dir=str(tmp_path / "c"))) > 0


def test_overwrite_card_replaces_an_edited_card_and_says_so(folder):
    with FakeHub() as hub:
        _api_push(folder, hub)
        hub.files["me/ap2o-tiny"]["README.md"] = _edited_on_the_hub(hub.files["me/ap2o-tiny"]["README.md"].decode()).encode()
        merged = _push_cli(folder, "--repo-id", "me/ap2o-tiny", "--endpoint", hub.url, env={"HF_TOKEN": "hf_x"})
        assert merged.returncode == 0, merged.stderr
        assert "the Hub's card was edited there" in merged.stdout and "--overwrite-card" in merged.stdout
        write_card(folder)  # ours again, as `ap2o-build card` writes it
        proc = _push_cli(folder, "--repo-id", "me/ap2o-tiny", "--endpoint", hub.url, "--overwrite-card",
                         env={"HF_TOKEN": "hf_x"})
        assert proc.returncode == 0, proc.stderr
        assert hub.files["me/ap2o-tiny"]["README.md"] == (folder / "README.md").read_bytes()
    assert "Curated by hand" not in (folder / "README.md").read_text()


def test_our_own_unedited_card_is_replaced_by_the_new_one(folder):
    with FakeHub() as hub:
        _api_push(folder, hub)
        write_card(folder, CardConfig(repo_id="me/ap2o-tiny", pretty_name="Renamed"))
        result = _api_push(folder, hub)
        remote = hub.files["me/ap2o-tiny"]["README.md"]
    assert not result.card_merged and remote == (folder / "README.md").read_bytes() and b"# Renamed" in remote


def test_a_card_without_yaml_on_the_hub_is_kept_with_the_datas_yaml():
    from builder.dataset.publish import merge_card

    merged = merge_card("Our notes.\n", "---\nlicense: mit\nconfigs:\n- config_name: pairs\n---\n# ours\n")
    assert merged.endswith("Our notes.\n") and _yaml_of(merged) == {"configs": [{"config_name": "pairs"}]}
