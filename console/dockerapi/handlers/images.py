"""Images: list, inspect, history, tag, remove, load (``docker load``), create (import, or an offline pull)."""

from __future__ import annotations

import fnmatch
import json
from datetime import datetime
from pathlib import Path

from runtime.errors import NotFound, disk_full_as_error

from .. import shapes
from ..errors import HTTPError, bad_request, not_found, not_implemented
from ..formats import unix
from ..params import boolean, check_filter_names, filters
from ..server import Response, json_response
from ..tarcheck import IMAGE_ARCHIVE, LAYER, checked
from ..uploads import receive_to_file

IMAGE_FILTERS = {"reference", "dangling", "label", "before", "since", "until"}
_DEFAULT_TAG = "latest"


def _json_line(data: dict) -> bytes:
    return json.dumps(data).encode() + b"\r\n"


def _error_line(message: str) -> bytes:
    return _json_line({"errorDetail": {"message": message}, "error": message})


# --- references ---------------------------------------------------------------------------------


def familiar(name: str) -> str:
    """``docker.io/library/busybox`` -> ``busybox``; ``docker.io/foo/bar`` -> ``foo/bar``."""
    for prefix in ("docker.io/", "index.docker.io/", "registry-1.docker.io/"):
        if name.startswith(prefix):
            name = name[len(prefix):]
            break
    return name.removeprefix("library/") if name.count("/") == 1 and name.startswith("library/") else name


def split_reference(reference: str) -> tuple[str, str]:
    """(name, tag) of ``name[:tag]``; the tag is "" when not given (a port in the domain is not a tag)."""
    name, sep, tag = reference.rpartition(":")
    if not sep or "/" in tag:
        return reference, ""
    return name, tag


def _reference_matches(pattern: str, tags: list[str]) -> bool:
    name_pattern, tag_pattern = split_reference(pattern)
    for tag in tags:
        name, tag_part = split_reference(tag)
        if fnmatch.fnmatchcase(name, name_pattern) and (not tag_pattern or fnmatch.fnmatchcase(tag_part, tag_pattern)):
            return True
    return False


# --- list, inspect, history -----------------------------------------------------------------------


def _list(services, given: dict[str, list[str]], all_: bool) -> list[dict]:
    images = services.list_images()
    before = since = None
    if given.get("before"):
        before = services.get_image(given["before"][0]).created
    if given.get("since"):
        since = services.get_image(given["since"][0]).created
    result = []
    for image in sorted(images, key=lambda i: i.created, reverse=True):
        item = shapes.image_summary(image)
        if "reference" in given and not any(_reference_matches(p, item["RepoTags"]) for p in given["reference"]):
            continue
        if "dangling" in given:
            dangling = boolean(given["dangling"][0])
            if dangling != (not item["RepoTags"]):
                continue
        if "label" in given:
            labels = item["Labels"] or {}
            if not all(k in labels and (not sep or labels[k] == v)
                       for k, sep, v in (entry.partition("=") for entry in given["label"])):
                continue
        if before is not None and not image.created < before:
            continue
        if since is not None and not image.created > since:
            continue
        result.append(item)
    return result


async def list_images(api, request) -> Response:
    given = filters(request.arg("filters"))
    legacy = request.arg("filter")  # docker-py before API 1.25: a plain name
    if legacy:
        given.setdefault("reference", []).append(legacy)
    check_filter_names(given, IMAGE_FILTERS)
    if "dangling" in given and given["dangling"] and given["dangling"][0].lower() not in ("true", "false", "1", "0"):
        raise bad_request(f"invalid filter 'dangling={given['dangling'][0]}'")
    return json_response(await api.sync(_list, api.services, given, boolean(request.arg("all"))))


def _inspect(services, name: str) -> dict:
    return shapes.image_inspect(services.get_image(name))


async def inspect(api, request) -> Response:
    return json_response(await api.sync(_inspect, api.services, request.params["name"]))


def _history(services, name: str) -> list[dict]:
    image = services.get_image(name)
    raw = image.config or {}
    entries = [h for h in (raw.get("history") or []) if isinstance(h, dict)] or [{}]
    result = []
    for index, entry in enumerate(reversed(entries)):
        created = entry.get("created")
        try:
            stamp = unix(datetime.fromisoformat(created.replace("Z", "+00:00")) if created else image.created)
        except ValueError:
            stamp = unix(image.created)
        result.append({
            "Id": image.id if index == 0 else "<missing>",
            "Created": stamp,
            "CreatedBy": entry.get("created_by", ""),
            "Tags": sorted(t.name for t in image.tags.all()) if index == 0 else None,
            "Size": image.size if index == 0 else 0,
            "Comment": entry.get("comment", ""),
        })
    return result


async def history(api, request) -> Response:
    return json_response(await api.sync(_history, api.services, request.params["name"]))


# --- tag, remove ---------------------------------------------------------------------------------


async def tag(api, request) -> Response:
    repo = request.arg("repo") or ""
    tag_name = request.arg("tag") or ""
    if not repo:
        raise bad_request("repository name must have at least one component")
    if not tag_name:
        repo, tag_name = split_reference(repo)
    await api.sync(api.services.tag_image, request.params["name"], repo, tag_name or _DEFAULT_TAG)
    return Response(201, b"", "text/plain; charset=utf-8")


async def remove(api, request) -> Response:
    force = boolean(request.arg("force"))
    return json_response(await api.sync(api.services.remove_image, request.params["name"], force=force))


# --- uploads: load and import ------------------------------------------------------------------------


def _loaded_lines(images) -> list[bytes]:
    lines = []
    for image in images:
        tags = sorted(t.name for t in image.tags.all())
        if tags:
            lines += [_json_line({"stream": f"Loaded image: {t}\n"}) for t in tags]
        else:
            lines.append(_json_line({"stream": f"Loaded image ID: {image.id}\n"}))
    return lines


async def _receive(api, request, prefix: str) -> Path:
    """The upload in a file under the state root; a full disk there is a DiskFull that says so."""
    with disk_full_as_error("cannot receive the archive", api.root):
        return await receive_to_file(api, request, prefix)


def _load(services, path: Path) -> list[bytes]:
    return _loaded_lines(services.load_images(str(path)))


async def load(api, request):
    """The tar comes chunked; errors go in the stream, as moby writes them once the query is read."""
    path = None
    error = None
    try:
        path = await _receive(api, request, "load-")
    except HTTPError as failure:
        error = failure.message
    if path is not None:
        path = await checked(api, path, IMAGE_ARCHIVE)  # a refusal is a 400 of its own: nothing was streamed yet
    stream = await request.stream("application/json")
    try:
        if error is None:
            lines = await api.sync(_load, api.services, path)
            await stream.write(b"".join(lines))
    except Exception as failure:  # noqa: BLE001 - reported in the stream, as moby does
        error = str(failure) or failure.__class__.__name__
    finally:
        if path is not None:
            path.unlink(missing_ok=True)
    if error is not None:
        await stream.write(_error_line(error))
    await stream.end()
    return None


def _import(services, path: Path, reference: str | None, changes: list[str]):
    return services.import_image(str(path), reference=reference, changes=tuple(changes)).id


async def _import_image(api, request):
    source = request.arg("fromSrc")
    if source != "-":
        raise not_implemented("importing from a URL (send the archive in the request body: fromSrc=-)")
    repo = request.arg("repo") or ""
    tag_name = request.arg("tag") or ""
    reference = None
    if repo:
        name, given_tag = split_reference(repo)
        reference = f"{name}:{tag_name or given_tag or _DEFAULT_TAG}"
    changes = [c for c in request.args("changes") if c.strip()]
    path = await checked(api, await _receive(api, request, "import-"), LAYER)
    try:
        image_id = await api.sync(_import, api.services, path, reference, changes)
    finally:
        path.unlink(missing_ok=True)
    stream = await request.stream("application/json")
    await stream.write(_json_line({"status": image_id}))
    await stream.end()
    return None


# --- pull (offline) ----------------------------------------------------------------------------------


def _pull_answer(services, name: str, tag_name: str) -> str:
    """"up to date" when the tag is here; otherwise the 404 a registry without that repository gives."""
    wanted = f"{name}:{tag_name}"
    try:
        services.get_image(wanted)
        return wanted
    except NotFound:
        pass
    for image in services.list_images():
        if any(split_reference(t.name)[0] == name for t in image.tags.all()):
            raise not_found(f"manifest for {wanted} not found: manifest unknown: manifest unknown")
    raise not_found(f"pull access denied for {name}, repository does not exist or may require 'docker login': "
                    "denied: requested access to the resource is denied")


async def _pull(api, request):
    from_image = request.arg("fromImage") or ""
    if not from_image:
        raise bad_request("fromImage or fromSrc is required")
    name, given_tag = split_reference(from_image)
    tag_name = request.arg("tag") or given_tag or _DEFAULT_TAG
    name = familiar(name)
    if "@" in name or tag_name.startswith("sha256:"):
        raise not_found(f"manifest for {name}@{tag_name} not found: manifest unknown: manifest unknown")
    wanted = await api.sync(_pull_answer, api.services, name, tag_name)
    stream = await request.stream("application/json")
    repository = name if "/" in name else f"library/{name}"
    await stream.write(_json_line({"status": f"Pulling from {repository}", "id": tag_name})
                       + _json_line({"status": f"Status: Image is up to date for {wanted}"}))
    await stream.end()
    return None


async def create(api, request):
    if request.arg("fromSrc") is not None:
        return await _import_image(api, request)
    return await _pull(api, request)


async def not_here(api, request):
    raise not_implemented(f"{request.method} {request.path}")


ROUTES = [
    ("GET", "/images/json", list_images),
    ("POST", "/images/load", load),
    ("POST", "/images/create", create),
    ("GET", "/images/search", not_here),
    ("POST", "/images/prune", not_here),
    ("GET", "/images/get", not_here),
    ("POST", "/build", not_here),
    ("POST", "/build/prune", not_here),
    ("GET", "/images/{name*}/json", inspect),
    ("GET", "/images/{name*}/history", history),
    ("GET", "/images/{name*}/get", not_here),
    ("POST", "/images/{name*}/tag", tag),
    ("POST", "/images/{name*}/push", not_here),
    ("DELETE", "/images/{name*}", remove),
]
