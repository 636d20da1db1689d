"""What every hub call shares: the endpoint, offline mode, names checked for safety, and
huggingface_hub's exceptions turned into messages a notebook user can act on.

``HF_ENDPOINT`` and ``HF_HUB_OFFLINE`` are read at each call (huggingface_hub reads them once, at
import), so setting them in a notebook cell takes effect at once.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from typing import Iterator, Optional
from urllib.parse import urlparse

from ..errors import HubError

_TRUE = {"1", "ON", "YES", "TRUE"}
_REPO_RE = re.compile(r"[A-Za-z0-9][\w.\-]{0,95}/[A-Za-z0-9_.\-][\w.\-]{0,95}")


def endpoint() -> str:
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def offline() -> bool:
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE")
    return env.upper() in _TRUE if env is not None else bool(constants.HF_HUB_OFFLINE)


def token() -> Optional[str]:
    from huggingface_hub import get_token

    return os.environ.get("HF_TOKEN") or get_token()


def api():
    from huggingface_hub import HfApi

    return HfApi(endpoint=endpoint(), token=token())


def require_online(what: str) -> None:
    if offline():
        raise HubError(
            f"HF_HUB_OFFLINE is set, so lmnb will not contact Hugging Face to {what}. "
            "Unset it (`%env HF_HUB_OFFLINE=0`) to go online; `%lm models` lists what is already local."
        )


def check_repo_id(repo_id: str) -> str:
    """A repository id that is safe to use in URLs and cache paths, or a ``HubError``."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not isinstance(repo_id, str) or not _REPO_RE.fullmatch(repo_id) or ".." in repo_id:
        raise HubError(f"{repo_id!r} is not a Hugging Face repository id (expected 'owner/name').")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise HubError(f"{repo_id!r} is not a valid repository id: {e}") from None
    return repo_id


def check_filename(path: str) -> str:
    """A path inside a repository that cannot escape it (no absolute paths, ``..``, backslashes)."""
    bad = (
        not path
        or path.startswith(("/", "~"))
        or "\\" in path
        or "\x00" in path
        or re.match(r"^[A-Za-z]:", path) is not None
        or any(part in ("", ".", "..") for part in path.split("/"))
    )
    if bad:
        raise HubError(f"refusing the file name {path!r}: it is absolute or leaves the repository folder")
    return path


@dataclass
class Ref:
    """What a user typed after ``%lm download``: a repo and optionally a quantization or a file."""

    repo_id: str
    quant: Optional[str] = None
    filename: Optional[str] = None
    revision: Optional[str] = None

    def __str__(self) -> str:
        tail = f":{self.quant}" if self.quant else f"/{self.filename}" if self.filename else ""
        return self.repo_id + tail


def parse_ref(text: str) -> Ref:
    """Parse ``owner/repo``, ``owner/repo:Q4_K_M``, ``owner/repo/file.gguf`` or a huggingface.co URL."""
    text = text.strip()
    revision = None
    if "://" in text or text.startswith(("hf.co/", "huggingface.co/")):
        u = urlparse(text if "://" in text else "https://" + text)
        parts = [p for p in u.path.split("/") if p]
        if len(parts) < 2:
            raise HubError(f"{text!r} does not name a repository")
        rest = parts[2:]
        if len(rest) >= 2 and rest[0] in ("blob", "resolve", "tree"):
            revision, rest = rest[1], rest[2:]
        text = "/".join(parts[:2] + rest)
    quant = filename = None
    if ":" in text:
        text, quant = text.rsplit(":", 1)
        if not re.fullmatch(r"[\w.\-]+", quant):
            raise HubError(f"{quant!r} is not a quantization label (e.g. Q4_K_M)")
    parts = text.split("/")
    if len(parts) > 2:
        filename = check_filename("/".join(parts[2:]))
    return Ref(check_repo_id("/".join(parts[:2])), quant, filename, revision)


@contextlib.contextmanager
def errors(repo_id: str, what: str = "") -> Iterator[None]:
    """Turn huggingface_hub/HTTP exceptions into ``HubError`` with a next step."""
    from huggingface_hub import errors as E

    where = f"{endpoint()}/{repo_id}"
    try:
        yield
    except HubError:
        raise
    except E.GatedRepoError as e:
        status = getattr(getattr(e, "response", None), "status_code", None)
        if token() is None or status == 401:
            msg = (
                f"{repo_id} is gated: accept its terms at {where} while logged in, then give lmnb a token "
                "(set HF_TOKEN, or run `hf auth login`)."
            )
        else:
            msg = (
                f"Your Hugging Face token has no access to {repo_id} yet (HTTP 403): accept its terms at "
                f"{where}; some authors approve requests by hand."
            )
        raise HubError(msg) from None
    except E.RepositoryNotFoundError:
        hint = "" if token() else " If it is private, set HF_TOKEN."
        raise HubError(f"No repository {repo_id} on {endpoint()}.{hint}") from None
    except E.RevisionNotFoundError:
        raise HubError(f"{repo_id} has no such revision (branch, tag or commit).") from None
    except E.EntryNotFoundError:
        raise HubError(f"{repo_id} has no file {what!r}." if what else f"A file is missing from {repo_id}.") from None
    except E.OfflineModeIsEnabled:
        require_online("download")
        raise
    except E.HfHubHTTPError as e:
        status = getattr(getattr(e, "response", None), "status_code", "?")
        raise HubError(f"Hugging Face answered HTTP {status} for {repo_id}: {str(e).splitlines()[0]}") from None
    except (ConnectionError, TimeoutError, OSError) as e:
        if type(e).__name__ in ("ConnectError", "ConnectTimeout", "ReadTimeout") or isinstance(
            e, (ConnectionError, TimeoutError)
        ):
            raise HubError(f"Could not reach {endpoint()}: {e}. Check the network (or set HF_HUB_OFFLINE=1).") from None
        raise
    except Exception as e:
        # httpx's transport errors are not OSErrors; name-based so the httpx flavour does not matter
        if type(e).__name__ in ("ConnectError", "ConnectTimeout", "ReadTimeout", "RemoteProtocolError", "ReadError"):
            raise HubError(f"Could not reach {endpoint()}: {e}. Check the network (or set HF_HUB_OFFLINE=1).") from None
        raise
