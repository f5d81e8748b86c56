"""The images page: the local images, import of a rootfs tar, load of an archive, tag and remove.

Uploads are streamed to a temporary file by Django's upload handler (never
held in memory) and handed to the services as a file object, which copy it
where the host's worker reads it. The upload forms post with htmx too, so
the browser can show a progress bar (``htmx:xhr:progress``); without
JavaScript they are plain multipart forms.
"""

from functools import partial, wraps

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.files.uploadhandler import TemporaryFileUploadHandler
from django.db.models import Count
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_POST

from runtime.errors import BerthError, DiskFull, InvalidValue, disk_full_as_error

from .. import roles, services
from ..humanize import human_duration
from ..models import Container, Image
from . import common


class ImportForm(forms.Form):
    archive = forms.FileField(label="Rootfs tar")
    reference = forms.CharField(label="Reference (repository[:tag])", required=False)
    changes = forms.CharField(label="Changes (one Dockerfile instruction per line, e.g. CMD [\"/bin/sh\"])",
                              required=False, widget=forms.Textarea(attrs={"rows": 2}))


class LoadForm(forms.Form):
    archive = forms.FileField(label="Archive (docker save or OCI tar)")


class TagForm(forms.Form):
    reference = forms.CharField(label="New tag", widget=forms.TextInput(attrs={"placeholder": "repository[:tag]"}))


def _short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


def _tag_form(image: Image, data=None) -> TagForm:
    # Every row has its own tag form: ids of their own, so each label and error belongs to its row.
    return TagForm(data, auto_id=f"id_tag_{_short(image.id)}_%s")


def _get_image(image_id: str) -> Image:
    image = Image.objects.filter(pk=image_id).first()
    if image is None:
        raise Http404("No such image")
    return image


def _image_rows(tag_form_of: dict | None = None) -> list[dict]:
    """What each row of the list shows; ``tag_form_of`` holds a bound tag form for the row it failed on."""
    used = dict(Container.objects.filter(image__isnull=False).values_list("image").annotate(n=Count("id")))
    now = timezone.now()
    return [{
        "image": image,
        "tags": [tag.name for tag in image.tags.all()],
        "short_id": _short(image.id),
        "created_ago": human_duration((now - image.created).total_seconds()) + " ago",
        "containers": used.get(image.id, 0),
        "tag_form": (tag_form_of or {}).get(image.id) or _tag_form(image),
    } for image in services.list_images()]


def _render_list(request, import_form=None, load_form=None, tag_form_of=None, status=200):
    return render(request, "images.html", {
        "rows": _image_rows(tag_form_of),
        "import_form": import_form or ImportForm(prefix="import"),
        "load_form": load_form or LoadForm(prefix="load"),
    }, status=status)


def _refusal(request, action: str, name: str = ""):
    return common.refusal(request, action, partial(_render_list, request), name=name)


def _refused(request, error: roles.PermissionDenied):
    return common.refused(request, error, partial(_render_list, request))


def _is_htmx(request) -> bool:
    return request.headers.get("HX-Request") == "true"


def _done(request):
    """After a successful upload: the list again (htmx is told to go there, a plain form is redirected)."""
    if _is_htmx(request):
        response = HttpResponse()
        response["HX-Redirect"] = reverse("image-list")
        return response
    return redirect("image-list")


@login_required
def image_list(request):
    return _render_list(request)


def streamed_upload(form_class, prefix: str):
    """Uploads go to a temporary file, never into memory; CSRF is checked once that is set up.

    The CSRF middleware reads the body before the view could change the
    upload handlers, so it is skipped here and the same check runs inside.
    A disk that fills while the upload is received answers the form again
    with the error beside its file (nothing was made, so no CSRF check is owed).
    """
    def decorate(view):
        protected = csrf_protect(view)

        @wraps(view)
        @csrf_exempt
        @login_required
        @require_POST
        def wrapper(request):
            request.upload_handlers = [TemporaryFileUploadHandler(request)]
            try:
                with disk_full_as_error("cannot receive the archive", settings.FILE_UPLOAD_TEMP_DIR or ""):
                    request.POST  # noqa: B018 - reading the body writes the upload to its file
            except DiskFull as error:
                return _form_again(request, prefix, _with_error_only(form_class(data={}, prefix=prefix), str(error)))
            return protected(request)

        return wrapper

    return decorate


def _with_error_only(form, error: str):
    """A form whose one error is the archive's (the body is lost, so its fields are empty, not wrong)."""
    form.full_clean()
    form.errors.clear()
    form.add_error("archive", error)
    return form


def _form_again(request, prefix: str, form):
    """An upload form with its errors: the form alone for htmx, else the whole page."""
    if _is_htmx(request):
        return render(request, f"_image_{prefix}_form.html", {f"{prefix}_form": form})
    return _render_list(request, **{f"{prefix}_form": form})


def _uploaded_path(form) -> str:
    """The upload's own file (in FILE_UPLOAD_TEMP_DIR), which the host's worker reads: not copied again under
    the state root, where the web's user may not write."""
    return form.cleaned_data["archive"].temporary_file_path()


@streamed_upload(ImportForm, "import")
def image_import(request):
    if refused := _refusal(request, "image.import", request.POST.get("import-reference", "")):
        return refused
    form = ImportForm(request.POST, request.FILES, prefix="import")
    if form.is_valid():
        changes = [line.strip() for line in form.cleaned_data["changes"].splitlines() if line.strip()]
        try:
            image = services.import_image(_uploaded_path(form), form.cleaned_data["reference"].strip() or None,
                                          changes, user=request.user, source="web")
        except roles.PermissionDenied as error:
            return _refused(request, error)
        except InvalidValue as error:
            form.add_error("reference" if error.field == "reference" else "archive", str(error))
        except BerthError as error:
            form.add_error("archive", str(error))
        else:
            messages.success(request, f"Imported {image.id}.")
            return _done(request)
    return _form_again(request, "import", form)


@streamed_upload(LoadForm, "load")
def image_load(request):
    if refused := _refusal(request, "image.load"):
        return refused
    form = LoadForm(request.POST, request.FILES, prefix="load")
    if form.is_valid():
        try:
            images = services.load_images(_uploaded_path(form), user=request.user, source="web")
        except roles.PermissionDenied as error:
            return _refused(request, error)
        except BerthError as error:
            form.add_error("archive", str(error))
        else:
            for image in images:
                names = ", ".join(tag.name for tag in image.tags.all())
                messages.success(request, f"Loaded image: {names}" if names else f"Loaded image ID: {image.id}")
            return _done(request)
    return _form_again(request, "load", form)


@login_required
@require_POST
def image_tag(request, image_id):
    image = _get_image(image_id)
    if refused := _refusal(request, "image.tag", request.POST.get("reference", "")):
        return refused
    form = _tag_form(image, request.POST)
    if form.is_valid():
        reference = form.cleaned_data["reference"].strip()
        try:
            services.tag_image(image.id, reference, user=request.user, source="web")
        except roles.PermissionDenied as error:
            return _refused(request, error)
        except BerthError as error:
            form.add_error("reference", str(error))
        else:
            messages.success(request, f"Tagged {_short(image.id)} as {reference}.")
            return redirect("image-list")
    return _render_list(request, tag_form_of={image.id: form})


@login_required
@require_POST
def image_remove(request, image_id):
    image = _get_image(image_id)
    tags = list(image.tags.values_list("name", flat=True))
    # A tag of it is removed as `docker rmi name:tag` does (untagged; the image goes with its last tag),
    # anything else means the image itself, by id.
    reference = request.POST.get("reference") if request.POST.get("reference") in tags else image.id
    if refused := _refusal(request, "image.remove", reference):
        return refused
    try:
        removed = services.remove_image(reference, force=request.POST.get("force") == "on",
                                        user=request.user, source="web")
    except roles.PermissionDenied as error:
        return _refused(request, error)
    except BerthError as error:
        messages.error(request, str(error))
    else:
        for line in removed:
            for kind, value in line.items():
                messages.success(request, f"{kind}: {value}")
    return redirect("image-list")


urlpatterns = [
    path("images/", image_list, name="image-list"),
    path("images/import/", image_import, name="image-import"),
    path("images/load/", image_load, name="image-load"),
    path("images/<str:image_id>/tag/", image_tag, name="image-tag"),
    path("images/<str:image_id>/remove/", image_remove, name="image-remove"),
]
websocket_urlpatterns = []
