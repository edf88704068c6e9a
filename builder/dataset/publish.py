"""The ``push`` stage: upload a dataset folder to the Hugging Face Hub as a dataset repo.

``ap2o-build push FOLDER --repo-id USER/NAME [--private] [--revision BRANCH] [--create-pr]
[--commit-message TEXT] [--dry-run]``

The folder is already the repo (card, ``build.yaml``, ``data/<config>/*.parquet``), so pushing is
create-the-repo + upload-the-folder with ``huggingface_hub``, with three corrections that make the
repo right for whoever loads it:

- the card is rewritten first when its ``load_dataset`` snippets name another repo (the
  ``your-username/NAME`` placeholder of a card written without ``--repo-id``), so the published
  card names the repo it is in;
- remote files under ``data/`` that the folder does not have are deleted in the same commit.
  Without that, a re-push with fewer shards leaves the old ones behind, the card's ``data_files``
  globs pick them up, and ``load_dataset`` fails with ``NonMatchingSplitsSizesError``;
- a ``README.md`` someone edited on the Hub is kept, as ``datasets``' ``push_to_hub`` keeps it: its
  text and YAML stay, and only the YAML this build decides -- ``configs`` (where the data files
  are) and ``dataset_info`` (their features and sizes) -- comes from the folder's card. The card
  ``ap2o-build card`` writes carries a stamp (``builder.dataset.card.stamp``); a remote card whose
  stamp still matches is ours, unedited, and is replaced. ``--overwrite-card`` replaces an edited
  one too. The merged card is written into the folder first, so the folder is what the repo holds.

``--dry-run`` prints what would be uploaded (with sizes), what would be deleted and whether the
card would be rewritten, and sends nothing: no request at all, so it cannot list the remote repo
and says which deletion rule applies instead of naming remote files. Large folders go through
``upload_large_folder`` where the installed ``huggingface_hub`` has it (resumable, many commits);
from ``huggingface_hub`` 1.x on, ``upload_folder`` itself streams and splits large folders, so it
is used for every size. The token comes from where ``huggingface_hub`` always looks (``HF_TOKEN``,
``hf auth login``) or ``--token``. Every failure a user can fix -- offline mode, no network, no
token, a token without write access, a missing folder -- ends as one ``UserError`` line that
says what to do, not a traceback.
"""

from __future__ import annotations

import os
import pathlib
import re
import tempfile
from dataclasses import dataclass, field

import yaml

from builder import io
from builder.dataset.card import card_options, is_stamped, write_card
from builder.errors import UserError
from builder.flags import add_dataclass_arguments, dataclass_from_args

# huggingface_hub is imported in the functions that talk to the Hub: its HTTP stack costs
# ~0.1-0.3 s, and every ap2o-build command imports this module to list its flags.

LARGE_FOLDER_BYTES = 5 * 1024**3   # above this (or LARGE_FOLDER_FILES), prefer upload_large_folder
LARGE_FOLDER_FILES = 1000
# Remote files a push may delete when the folder lacks them: the data, never a file the repo's
# owner added by hand beside it (their own notes, a .gitattributes).
DELETE_PATTERNS = ("data/**",)
IGNORE_PATTERNS = (".*", "**/.*")  # hidden files: temporaries of atomic writes, editor droppings


@dataclass
class PushConfig:
    """Where and how to publish a dataset folder."""

    repo_id: str = field(metadata={"help": "Hub dataset repo, e.g. 'USER/ap2o-humaneval'"})
    private: bool = field(default=False, metadata={"help": "create the repo private (an existing repo keeps its visibility)"})
    revision: str | None = field(default=None, metadata={"help": "branch to push to (created from main if missing); default: main"})
    token: str | None = field(default=None, metadata={"help": "Hub token; default: $HF_TOKEN or the one saved by `hf auth login`"})
    endpoint: str | None = field(default=None, metadata={"help": "Hub URL; default: $HF_ENDPOINT or https://huggingface.co"})
    commit_message: str = field(default="Upload dataset built with ap2o-build", metadata={"help": "commit message"})
    create_pr: bool = field(default=False, metadata={
        "help": "open a pull request with the upload instead of committing to the branch"})
    dry_run: bool = field(default=False, metadata={
        "help": "print what would be uploaded and deleted, with sizes; send nothing (no network)"})
    overwrite_card: bool = field(default=False, metadata={
        "help": "replace a README.md edited on the Hub with this folder's card (default: keep its text and "
                "YAML, and update only its configs and dataset_info, as push_to_hub does)"})

# The card's YAML keys a push takes from the folder into a card edited on the Hub: what the data
# decides (push_to_hub updates the same two); the rest is the editor's.
DATA_KEYS = ("configs", "dataset_info")


def _check_folder(folder: pathlib.Path) -> tuple[int, int]:
    if not folder.is_dir():
        raise UserError(f"{folder}: no such dataset folder")
    if not (folder / "README.md").is_file():
        raise UserError(f"{folder}: no README.md card (write it with `ap2o-build card {folder}`)")
    if not any((folder / "data").glob("*/*.parquet")):
        raise UserError(f"{folder}: no data/<config>/*.parquet (is it a folder made by `ap2o-build run`?)")
    files = [p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")]
    return len(files), sum(p.stat().st_size for p in files)


def _explain(e: Exception, cfg: PushConfig, endpoint: str) -> UserError:
    """One actionable line for what went wrong talking to the Hub."""
    return explain_hub_error(e, cfg.repo_id, endpoint)


def explain_hub_error(e: Exception, repo_id: str, endpoint: str, flag: str = "--repo-id",
                      token_flag: str = "--token") -> UserError:
    """One actionable line for what went wrong pushing to ``repo_id`` (``ap2o-build push``, and
    ``ap2o-train --push-to-hub``, whose flags are ``--hub-model-id`` and ``--hub-token``)."""
    from huggingface_hub import errors

    if isinstance(e, errors.OfflineModeIsEnabled):
        return UserError("the Hub is in offline mode (HF_HUB_OFFLINE is set): unset it to push")
    if isinstance(e, errors.LocalTokenNotFoundError):
        return UserError(f"no Hugging Face token: run `hf auth login`, set HF_TOKEN, or pass {token_flag}")
    if isinstance(e, errors.HfHubHTTPError):
        status = getattr(getattr(e, "response", None), "status_code", None)
        if status in (401, 403):
            return UserError(f"{endpoint} refused the token (HTTP {status}): it needs write access to {repo_id!r} "
                             f"(`hf auth login` with a write token, or {token_flag})")
        if isinstance(e, errors.RepositoryNotFoundError) or status == 404:
            return UserError(f"{repo_id!r} not found on {endpoint} and could not be created (HTTP {status})")
        return UserError(f"{endpoint}: HTTP {status} while pushing {repo_id!r}: {str(e).splitlines()[0]}")
    if isinstance(e, errors.HFValidationError):
        return UserError(f"{flag} {repo_id!r}: {str(e).splitlines()[0]}")
    return UserError(f"cannot reach {endpoint} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                     "check the network, or HF_ENDPOINT")


@dataclass
class PushResult:
    """What a push did (or, with ``dry_run``, would do)."""

    url: str
    files: list[tuple[str, int]]          # (path in repo, bytes) of every file uploaded
    card_rewritten: bool                  # the card named another repo and was rewritten first
    commit_url: str | None = None
    card_merged: bool = False             # the Hub's card was edited there: its text and YAML kept
    pr_url: str | None = None
    dry_run: bool = False


def local_files(folder: pathlib.Path) -> list[tuple[str, int]]:
    """(path in repo, bytes) of the files ``upload_folder`` sends: hidden ones left out."""
    from huggingface_hub.utils import filter_repo_objects

    paths = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    kept = filter_repo_objects(paths, ignore_patterns=list(IGNORE_PATTERNS))
    return [(p, (folder / p).stat().st_size) for p in kept]


def _card_names(folder: pathlib.Path, repo_id: str) -> bool:
    text = (folder / "README.md").read_text(encoding="utf-8", errors="replace")
    return f'load_dataset("{repo_id}"' in text


def _rewrite_card(folder: pathlib.Path, repo_id: str) -> None:
    """The card again, naming ``repo_id``, with the options the current card was written with."""
    options = card_options(folder)
    options.repo_id = repo_id
    write_card(folder, options)


def push(folder: str | os.PathLike, cfg: PushConfig) -> PushResult:
    """Create ``cfg.repo_id`` (a dataset repo) if needed and upload ``folder`` in one commit (or
    pull request) that also deletes the repo's stale data files; see the module doc."""
    from huggingface_hub import HfApi, constants, errors

    folder = pathlib.Path(folder)
    n_files, n_bytes = _check_folder(folder)
    endpoint = cfg.endpoint or constants.ENDPOINT
    card_rewritten = not _card_names(folder, cfg.repo_id)
    if cfg.dry_run:
        _validate_repo_id(cfg)
        return PushResult(f"{endpoint.rstrip('/')}/datasets/{cfg.repo_id}", local_files(folder), card_rewritten,
                          dry_run=True)
    if constants.is_offline_mode():
        raise _explain(errors.OfflineModeIsEnabled("offline"), cfg, endpoint)
    token = cfg.token or _saved_token()
    if not token:  # fail before any request, with the fix in the message
        raise _explain(errors.LocalTokenNotFoundError("no token"), cfg, endpoint)
    _validate_repo_id(cfg)
    if card_rewritten:  # before any request: a card that cannot be written is the user's to fix first
        _rewrite_card(folder, cfg.repo_id)
    api = HfApi(endpoint=cfg.endpoint, token=token)
    commit = None
    try:
        url = api.create_repo(cfg.repo_id, repo_type="dataset", private=cfg.private, exist_ok=True)
        if cfg.revision:
            api.create_branch(cfg.repo_id, branch=cfg.revision, repo_type="dataset", exist_ok=True)
        card_merged = _keep_edited_card(api, folder, cfg)
        large = n_bytes > LARGE_FOLDER_BYTES or n_files > LARGE_FOLDER_FILES
        if large and hasattr(api, "upload_large_folder") and not cfg.create_pr:
            # many commits, resumable; it never deletes, so stale data files go in a commit of their own
            api.upload_large_folder(repo_id=cfg.repo_id, folder_path=folder, repo_type="dataset",
                                    revision=cfg.revision, private=cfg.private, ignore_patterns=list(IGNORE_PATTERNS))
            _delete_stale(api, folder, cfg)
        else:
            commit = api.upload_folder(repo_id=cfg.repo_id, folder_path=folder, repo_type="dataset",
                                       revision=cfg.revision, commit_message=cfg.commit_message,
                                       create_pr=cfg.create_pr or None, ignore_patterns=list(IGNORE_PATTERNS),
                                       delete_patterns=list(DELETE_PATTERNS))
    except UserError:
        raise
    except (errors.HfHubHTTPError, errors.OfflineModeIsEnabled, errors.LocalTokenNotFoundError,
            errors.HFValidationError, OSError) as e:
        raise _explain(e, cfg, endpoint) from None
    except Exception as e:  # httpx transport errors and the like: the network, not a bug of ours
        if type(e).__module__.startswith(("httpx", "httpcore", "requests", "urllib3", "huggingface_hub")):
            raise _explain(e, cfg, endpoint) from None
        raise
    return PushResult(str(url), local_files(folder), card_rewritten,
                      commit_url=getattr(commit, "commit_url", None), pr_url=getattr(commit, "pr_url", None),
                      card_merged=card_merged)


def _remote_card(api, cfg: PushConfig) -> str | None:
    """The repo's README.md at the branch the push goes to, or None when it has none."""
    from huggingface_hub import errors

    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = api.hf_hub_download(cfg.repo_id, "README.md", repo_type="dataset", revision=cfg.revision,
                                       cache_dir=tmp)
        except (errors.EntryNotFoundError, errors.RepositoryNotFoundError, errors.RevisionNotFoundError):
            return None
        return pathlib.Path(path).read_text(encoding="utf-8", errors="replace")


def merge_card(remote: str, local: str) -> str:
    """``remote`` (a card edited on the Hub) with its YAML's ``DATA_KEYS`` taken from ``local``: the
    editor's text and every other YAML key kept, in the editor's order; the data's location and
    sizes this build's."""
    theirs, body = _split_card(remote)
    ours, _ = _split_card(local)
    theirs.update({k: v for k, v in ours.items() if k in DATA_KEYS})
    header = yaml.safe_dump(theirs, sort_keys=False, allow_unicode=True, width=1000)
    return f"---\n{header}---\n{body}"


def _split_card(text: str) -> tuple[dict, str]:
    """A card's YAML header (empty without one) and its text, as the Hub splits them."""
    match = re.match(r"^---\s*\n(.*?)\n---\s*\n", text, flags=re.DOTALL)
    if not match:
        return {}, text
    try:
        data = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError as e:
        raise UserError(f"README.md on the Hub: its YAML header does not parse ({str(e).splitlines()[0]}); "
                        "fix it there, or pass --overwrite-card") from None
    return (data if isinstance(data, dict) else {}), text[match.end():]


def _keep_edited_card(api, folder: pathlib.Path, cfg: PushConfig) -> bool:
    """When the Hub's card was edited there (its stamp does not match) and the push does not
    overwrite it, write the merged card into ``folder`` (so the upload sends it); True then."""
    if cfg.overwrite_card:
        return False
    remote = _remote_card(api, cfg)
    path = folder / "README.md"
    local = path.read_text(encoding="utf-8")
    if remote is None or remote == local or is_stamped(remote):
        return False

    with io.atomic_path(path) as tmp:
        tmp.write_text(merge_card(remote, local), encoding="utf-8")
    return True


def _validate_repo_id(cfg: PushConfig) -> None:
    from huggingface_hub import errors
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(cfg.repo_id)
    except errors.HFValidationError as e:
        raise UserError(f"--repo-id {cfg.repo_id!r}: {str(e).splitlines()[0]}") from None
    if "/" not in cfg.repo_id:
        raise UserError(f"--repo-id {cfg.repo_id!r}: expected OWNER/NAME (the owner is your user or organization)")
    if cfg.create_pr and cfg.revision:
        raise UserError("--create-pr opens a pull request against main: drop --revision (or push to the branch "
                        "without --create-pr)")
    if not cfg.commit_message.strip():
        raise UserError("--commit-message is empty: the Hub needs a message for every commit")


def _delete_stale(api, folder: pathlib.Path, cfg: PushConfig) -> None:
    from huggingface_hub import CommitOperationDelete
    from huggingface_hub.utils import filter_repo_objects

    ours = {p for p, _ in local_files(folder)}
    remote = api.list_repo_files(cfg.repo_id, repo_type="dataset", revision=cfg.revision)
    stale = [p for p in filter_repo_objects(remote, allow_patterns=list(DELETE_PATTERNS)) if p not in ours]
    if stale:
        api.create_commit(cfg.repo_id, [CommitOperationDelete(p) for p in stale], repo_type="dataset",
                          revision=cfg.revision, commit_message=f"{cfg.commit_message} (remove stale data files)")


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n} B"  # pragma: no cover


def describe(result: PushResult, cfg: PushConfig) -> str:
    """What ``push`` did or would do, for the terminal."""
    where = f"{result.url}" + (f" (branch {cfg.revision})" if cfg.revision else "")
    total = sum(n for _, n in result.files)
    lines = []
    if result.dry_run:
        lines.append(f"dry run: nothing was sent (no network). A push would {'open a pull request on' if cfg.create_pr else 'commit to'} {where}:")
    else:
        lines.append(f"pushed to {where}" + (f" as a pull request: {result.pr_url}" if result.pr_url else "")
                     + (f"\ncommit: {result.commit_url}" if result.commit_url and not result.pr_url else ""))
    verb = "upload" if result.dry_run else "uploaded"
    lines.append(f"{verb} {len(result.files)} files, {_size(total)}:")
    lines += [f"  {_size(n):>10}  {p}" for p, n in result.files]
    if result.card_rewritten:
        lines.append(("the card would be rewritten" if result.dry_run else "the card was rewritten")
                     + f" first: its load_dataset snippets named another repo than {cfg.repo_id!r}")
    if result.dry_run and not cfg.overwrite_card:
        lines.append("README.md: if the Hub's card was edited there, its text and YAML are kept and only "
                     f"{' and '.join(DATA_KEYS)} updated (--overwrite-card replaces it)")
    if result.card_merged:
        lines.append(f"README.md: the Hub's card was edited there; kept its text and YAML, updated "
                     f"{' and '.join(DATA_KEYS)} (README.md here now holds that card; --overwrite-card replaces it)")
    rule = ", ".join(DELETE_PATTERNS)
    if result.dry_run:
        lines.append(f"delete: every remote file matching {rule} that is not listed above (the remote repo is not "
                     "listed in a dry run, so these files are not named here)")
    else:
        lines.append(f"deleted: remote files matching {rule} that the folder does not have")
    lines.append(f'commit message: "{cfg.commit_message}"')
    lines.append(f'load it with: datasets.load_dataset("{cfg.repo_id}", "pairs")')
    return "\n".join(lines)


def _saved_token() -> str | None:
    from huggingface_hub import get_token

    return get_token()


# --- command line --------------------------------------------------------------------------------

def configure(parser) -> None:
    parser.add_argument("folder", help="dataset folder made by `ap2o-build run`")
    parser.add_argument("--repo-id", required=True, help="Hub dataset repo, e.g. USER/ap2o-humaneval")
    add_dataclass_arguments(parser, PushConfig, exclude=("repo_id",))


def main(args) -> int:
    cfg = dataclass_from_args(PushConfig, args, base={"repo_id": args.repo_id})
    print(describe(push(args.folder, cfg), cfg))
    return 0


__all__ = ["DATA_KEYS", "DELETE_PATTERNS", "PushConfig", "PushResult", "describe", "local_files", "merge_card", "push"]
