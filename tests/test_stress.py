"""The stress suite's fixed set: 200 generated programs, each under plain joblib and the plugin.

``tox -e stress`` runs it (and ``.ci/run``); ``python tests/stress.py --seeds
START:STOP`` runs any other programs, and prints a failing one with the
command that replays it. See ``tests/stress.py`` for the programs and the
invariants.
"""

from __future__ import annotations

import pytest

from stress import known_hang, report, run_program

pytestmark = [pytest.mark.stress, pytest.mark.timeout(180)]

#: The CI set.
SEEDS = range(200)


@pytest.mark.parametrize("seed", SEEDS)
def test_a_generated_program_behaves_as_under_plain_joblib(seed: int) -> None:
    program, problems = run_program(seed)
    known = known_hang(program, problems)
    if known:
        pytest.xfail(known)
    assert not problems, report(seed, program, problems)
