"""pytest configuration shared by the tests and the notebook checks (nbval)."""


def pytest_collectstart(collector):
    # Progress bars and warnings go to stderr and differ between runs: never compare them.
    if getattr(collector, "path", None) is not None and collector.path.suffix == ".ipynb":
        collector.skip_compare += ("stderr", "text/html", "application/javascript",
                                   "application/vnd.jupyter.widget-view+json")
