"""Reading the console's rendered pages in tests."""


def field_errors(page: str, field: str) -> str:
    """The text of the form field's `<div id="field-<field>">`: its input and, when it has any, its errors."""
    start = page.index(f'id="field-{field}"')
    return page[start:page.index("</div>", start)]
