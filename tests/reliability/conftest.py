"""Every test here launches real jobs (torchrun, 2 gloo ranks): `make test-reliability`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability import jobs


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/reliability/" in str(item.fspath):
            item.add_marker(pytest.mark.reliability)


@pytest.fixture(scope="session")
def sft_final(corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained model folder to start DPO from (one SFT step of the tiny model)."""
    out = tmp_path_factory.mktemp("sft-init")
    jobs.run(
        2, "stage=sft", f"data.dir={corpus_dir}", f"output_dir={out}", "trainer.max_steps=1", log=out / "log"
    )
    return out / "sft" / "final"
