"""Run reports and dashboards (no Kedro).

- :func:`html.render_report`: the self-contained HTML run report;
- :func:`curves.stage_lineage`, :func:`examples.pick_examples`: its inputs;
- :func:`browser.open_page`: load a page in headless Chromium, console errors + screenshot;
- :mod:`dashboards`: the ``make dashboards`` supervisor.

Nothing is imported here: ``python -m granvit_pipeline.reporting.dashboards`` should not pay
for torch and matplotlib.
"""
