"""`ocrkit list`: registered components, their distributions and status."""

from __future__ import annotations

import json

import click


@click.command("list", context_settings={"max_content_width": 100})
@click.argument("kind", required=False,
                type=click.Choice(["backbones", "necks", "heads", "classifiers"]))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per component on stdout.")
@click.option("-q", "--quiet", is_flag=True,
              help="No warnings on stderr (name clashes, plugin warnings); errors still print.")
def list_components(kind, as_json, quiet) -> None:
    """List components (name, distribution, version, status).

    Each component is imported to check it, so a broken plugin shows as
    "broken: <reason>" here and never breaks other commands.
    OCRKIT_DISABLE_PLUGIN_AUTOLOAD=1 hides third-party plugins.
    """
    from ocrkit import registry
    from ocrkit.cli._common import stderr_console

    console = stderr_console(quiet)  # -q: library warnings from plugins too
    kinds = [kind] if kind else list(registry.GROUPS)
    rows = []
    for k in kinds:
        for name, entry in sorted(registry.entries(k).items()):
            rows.append({"kind": k, "name": name, "distribution": entry.dist,
                         "version": entry.version, "status": registry.status(entry)})
        for clash in registry.conflicts(k):
            console.print(f"ocrkit: warning: {clash}", highlight=False, markup=False)
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    width = max((len(r["name"]) for r in rows), default=4)
    for row in rows:
        click.echo(f"{row['kind'][:-1]:<11} {row['name']:<{width}}  {row['distribution']} "
                   f"{row['version']}  {row['status']}")
