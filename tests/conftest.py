"""Deselect tests marked `gpu` when no CUDA device is present (deselected, not skipped)."""
import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_items:
        return
    import torch  # only when gpu tests were collected

    if torch.cuda.is_available():
        return
    items[:] = [item for item in items if not item.get_closest_marker("gpu")]
    config.hook.pytest_deselected(items=gpu_items)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"conftest: deselected {len(gpu_items)} gpu-marked tests (no CUDA device)")
