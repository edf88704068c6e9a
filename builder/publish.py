"""The ``push`` stage: upload a dataset folder to the Hugging Face Hub as a dataset repo.

``ap2o-build push FOLDER --repo-id USER/NAME [--private] [--revision BRANCH]``

The folder is already the repo (card, ``build.yaml``, ``data/<config>/*.parquet``), so pushing is
create-the-repo + upload-the-folder with ``huggingface_hub``. Large folders go through
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
from dataclasses import dataclass, field

from builder.errors import UserError

LARGE_FOLDER_BYTES = 5 * 1024**3   # above this (or LARGE_FOLDER_FILES), prefer upload_large_folder
LARGE_FOLDER_FILES = 1000


@dataclass
class PushConfig:
    """Where and how to publish a dataset folder."""

    repo_id: str = field(metadata={"help": "Hub dataset repo, e.g. 'USER/ap2o-humaneval'"})
    private: bool = field(default=False, metadata={"help": "create the repo private (an existing repo keeps its visibility)"})
    revision: str | None = field(default=None, metadata={"help": "branch to push to (created from main if missing); default: main"})
    token: str | None = field(default=None, metadata={"help": "Hub token; default: $HF_TOKEN or the one saved by `hf auth login`"})
    endpoint: str | None = field(default=None, metadata={"help": "Hub URL; default: $HF_ENDPOINT or https://huggingface.co"})
    commit_message: str = field(default="Upload dataset built with ap2o-build", metadata={"help": "commit message"})


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
    from huggingface_hub import errors

    if isinstance(e, errors.OfflineModeIsEnabled):
        return UserError("the Hub is in offline mode (HF_HUB_OFFLINE is set): unset it to push")
    if isinstance(e, errors.LocalTokenNotFoundError):
        return UserError("no Hugging Face token: run `hf auth login`, set HF_TOKEN, or pass --token")
    if isinstance(e, errors.HfHubHTTPError):
        status = getattr(getattr(e, "response", None), "status_code", None)
        if status in (401, 403):
            return UserError(f"{endpoint} refused the token (HTTP {status}): it needs write access to {cfg.repo_id!r} "
                             "(`hf auth login` with a write token, or --token)")
        if isinstance(e, errors.RepositoryNotFoundError) or status == 404:
            return UserError(f"{cfg.repo_id!r} not found on {endpoint} and could not be created (HTTP {status})")
        return UserError(f"{endpoint}: HTTP {status} while pushing {cfg.repo_id!r}: {str(e).splitlines()[0]}")
    if isinstance(e, errors.HFValidationError):
        return UserError(f"--repo-id {cfg.repo_id!r}: {str(e).splitlines()[0]}")
    return UserError(f"cannot reach {endpoint} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                     "check the network, or HF_ENDPOINT")


def push(folder: str | os.PathLike, cfg: PushConfig) -> str:
    """Create ``cfg.repo_id`` (a dataset repo) if needed and upload ``folder``; return the repo URL."""
    from huggingface_hub import HfApi, constants, errors

    folder = pathlib.Path(folder)
    n_files, n_bytes = _check_folder(folder)
    endpoint = cfg.endpoint or constants.ENDPOINT
    if constants.is_offline_mode():
        raise _explain(errors.OfflineModeIsEnabled("offline"), cfg, endpoint)
    token = cfg.token or _saved_token()
    if not token:  # fail before any request, with the fix in the message
        raise _explain(errors.LocalTokenNotFoundError("no token"), cfg, endpoint)
    api = HfApi(endpoint=cfg.endpoint, token=token)
    try:
        url = api.create_repo(cfg.repo_id, repo_type="dataset", private=cfg.private, exist_ok=True)
        if cfg.revision:
            api.create_branch(cfg.repo_id, branch=cfg.revision, repo_type="dataset", exist_ok=True)
        large = n_bytes > LARGE_FOLDER_BYTES or n_files > LARGE_FOLDER_FILES
        if large and hasattr(api, "upload_large_folder"):
            api.upload_large_folder(repo_id=cfg.repo_id, folder_path=folder, repo_type="dataset",
                                    revision=cfg.revision, private=cfg.private, ignore_patterns=[".*"])
        else:
            api.upload_folder(repo_id=cfg.repo_id, folder_path=folder, repo_type="dataset", revision=cfg.revision,
                              commit_message=cfg.commit_message, ignore_patterns=[".*", "**/.*"])
    except UserError:
        raise
    except (errors.HfHubHTTPError, errors.OfflineModeIsEnabled, errors.LocalTokenNotFoundError,
            errors.HFValidationError, OSError) as e:
        raise _explain(e, cfg, endpoint) from None
    except Exception as e:  # httpx transport errors and the like: the network, not a bug of ours
        if type(e).__module__.startswith(("httpx", "httpcore", "requests", "urllib3", "huggingface_hub")):
            raise _explain(e, cfg, endpoint) from None
        raise
    return str(url)


def _saved_token() -> str | None:
    from huggingface_hub import get_token

    return get_token()


# --- command line --------------------------------------------------------------------------------

def configure(parser) -> None:
    from builder.run import add_dataclass_arguments

    parser.add_argument("folder", help="dataset folder made by `ap2o-build run`")
    parser.add_argument("--repo-id", required=True, help="Hub dataset repo, e.g. USER/ap2o-humaneval")
    add_dataclass_arguments(parser, PushConfig, exclude=("repo_id",))


def main(args) -> int:
    from builder.run import dataclass_from_args

    cfg = dataclass_from_args(PushConfig, args, base={"repo_id": args.repo_id})
    url = push(args.folder, cfg)
    print(f"pushed {args.folder} to {url}" + (f" (branch {cfg.revision})" if cfg.revision else ""))
    print(f'load it with: datasets.load_dataset("{cfg.repo_id}", "pairs")')
    return 0


__all__ = ["PushConfig", "push"]
