"""Push a release folder to the Hugging Face Hub (``huggingface_hub``): the repository is created if needed, then the
folder is uploaded in one commit. The endpoint is ``HF_ENDPOINT`` (a private Hub or a local stand-in) or the Hub;
the token is ``HF_TOKEN`` or the one ``hf auth login`` saved."""

from __future__ import annotations

import os
from pathlib import Path

from lima_align.errors import LimaError


def push_folder(folder: str | Path, repo: str, *, private: bool = False, token: str | None = None,
                endpoint: str | None = None) -> str:
    """Upload ``folder`` to the model repository ``repo`` (owner/name); returns the commit's URL."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    if repo.count("/") != 1 or not all(repo.split("/")):
        raise LimaError(f"--push-to-hub takes owner/name, got {repo!r}")
    api = HfApi(endpoint=endpoint or os.environ.get("HF_ENDPOINT"), token=token)
    try:
        api.create_repo(repo, private=private, exist_ok=True, repo_type="model")
        info = api.upload_folder(folder_path=str(folder), repo_id=repo, repo_type="model",
                                 commit_message=f"lima-align export: {Path(folder).name}",
                                 ignore_patterns=[".*"])
    except HfHubHTTPError as exc:
        status = getattr(exc.response, "status_code", None)
        hint = " (log in with `hf auth login` or set HF_TOKEN)" if status in (401, 403) else ""
        raise LimaError(f"pushing {folder} to {api.endpoint}/{repo} failed: {exc}{hint}") from None
    return str(info.commit_url)
