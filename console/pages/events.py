"""The events page: every Operation row (the audit log), newest first, filtered, read-only.

Who, through what (source), from where (origin), what, on which object, when, and how it ended.

Paged by keyset on the primary key, not by offset: a page is "the 50 rows
below id N", which the primary key index answers at once however many rows
there are (100,000 and more), and no page needs a COUNT. Ids are handed out
in insertion order, as ``created`` is, so newest first is highest id first.
"""

from datetime import datetime, time, timedelta

from django import forms
from django.contrib.auth.decorators import login_required
from django.db.models import Q
from django.shortcuts import render
from django.urls import path, reverse
from django.utils import timezone
from django.views.decorators.http import require_GET

from ..models import Container, Network, Operation

PAGE_SIZE = 50
ANY = [("", "any")]


class EventFilter(forms.Form):
    action = forms.CharField(required=False, widget=forms.TextInput(attrs={"placeholder": "container.start"}),
                             help_text="an action or its kind: container, image, network...")
    user = forms.CharField(required=False, help_text='a user\'s name, "docker API" or "system"')
    source = forms.ChoiceField(choices=ANY + Operation.SOURCES, required=False)
    origin = forms.CharField(required=False, widget=forms.TextInput(attrs={"placeholder": "127.0.0.1 or uid 1000"}),
                             help_text="a client address, or a socket peer's uid")
    state = forms.ChoiceField(choices=ANY + Operation.STATES, required=False)
    target = forms.CharField(required=False, help_text="a name, or the start of an id")
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self):
        data = super().clean()
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            self.add_error("until", "The end of the range is before its start.")
        return data

    def filtered(self, operations):
        data = self.cleaned_data
        if data["action"].strip():
            action = data["action"].strip()
            operations = operations.filter(Q(action=action) | Q(action__startswith=action.rstrip(".") + "."))
        if data["user"].strip():
            operations = operations.filter(_who_is(data["user"].strip()))
        if data["source"]:
            operations = operations.filter(source=data["source"])
        if data["origin"].strip():
            operations = operations.filter(_origin_is(data["origin"].strip()))
        if data["state"]:
            operations = operations.filter(state=data["state"])
        if data["target"].strip():
            target = data["target"].strip()
            operations = operations.filter(Q(target_name__icontains=target) | Q(target_id__startswith=target))
        if data["since"]:
            operations = operations.filter(created__gte=_start_of(data["since"]))
        if data["until"]:
            operations = operations.filter(created__lt=_start_of(data["until"] + timedelta(days=1)))
        return operations


def _who_is(name: str) -> Q:
    """The rows ``who`` shows as ``name``: a user's, or the Docker API's or the system's (no user)."""
    if name == "docker API":
        return Q(user__isnull=True, source=Operation.SOURCE_API)
    if name == "system":
        return Q(user__isnull=True, source=Operation.SOURCE_SYSTEM)
    return Q(user__username=name)


def _origin_is(origin: str) -> Q:
    """An address as it is, or a peer: "uid 1000" matches every pid of that uid."""
    if origin.startswith("uid "):
        return Q(origin=origin) | Q(origin__startswith=origin + " pid ")
    return Q(origin=origin)


def _start_of(day) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def _cursor(value: str) -> int | None:
    return int(value) if value.isdigit() else None


def who(operation: Operation) -> str:
    """A person by name; otherwise what acted for nobody in particular: the Docker API socket, or Berth itself.

    Where from is ``operation.origin``: the client's address, the socket peer's uid and pid.
    """
    if operation.user is not None:
        return operation.user.get_username()
    return "docker API" if operation.source == Operation.SOURCE_API else "system"


def _page(operations, before: int | None, after: int | None) -> tuple[list[Operation], bool, bool]:
    """The page below ``before`` (or above ``after``), newest first, and whether newer and older rows exist."""
    if after is not None:
        rows = list(operations.filter(pk__gt=after).order_by("pk")[:PAGE_SIZE])[::-1]
    else:
        below = operations.filter(pk__lt=before) if before is not None else operations
        rows = list(below.order_by("-pk")[:PAGE_SIZE])
    if not rows:
        return [], False, False
    return rows, operations.filter(pk__gt=rows[0].pk).exists(), operations.filter(pk__lt=rows[-1].pk).exists()


def _links(rows: list[Operation]) -> dict[str, str]:
    """Targets that still exist, by id: containers and networks have pages to open."""
    ids = {row.target_id for row in rows if row.target_id}
    links = {pk: reverse("network-detail", args=[pk])
             for pk in Network.objects.filter(pk__in=ids).values_list("pk", flat=True)}
    links.update({pk: reverse("container-detail", args=[pk])
                  for pk in Container.objects.filter(pk__in=ids).values_list("pk", flat=True)})
    return links


@login_required
@require_GET
def event_list(request):
    form = EventFilter(request.GET)
    operations = Operation.objects.select_related("user")
    rows, has_newer, has_older = [], False, False
    if form.is_valid():
        rows, has_newer, has_older = _page(form.filtered(operations), _cursor(request.GET.get("before", "")),
                                           _cursor(request.GET.get("after", "")))
    links = _links(rows)
    query = request.GET.copy()
    for key in ("before", "after"):
        query.pop(key, None)
    return render(request, "events.html", {
        "form": form, "filters": query.urlencode(),
        "rows": [{"operation": row, "who": who(row), "link": links.get(row.target_id)} for row in rows],
        "newer": rows[0].pk if rows and has_newer else None, "older": rows[-1].pk if rows and has_older else None,
    })


urlpatterns = [
    path("events/", event_list, name="event-list"),
]
websocket_urlpatterns = []
