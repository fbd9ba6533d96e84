"""The PPO ABR agent end to end on the Rust simulator's bindings (issue 30: "CI trains a tiny PPO
policy in a minute to check the bindings and the export"): the environment passes gymnasium's
checker, a few thousand PPO steps train, the actor exports to ONNX, the ONNX graph picks the
same actions as torch, the same policy plays the same session through the gymnasium wrapper
and through the simulator's own `run`, and the reward answers to the viewer's preference."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from nerve_learning.paths import REPO
from nerve_learning.rl import sim, synthetic
from nerve_learning.rl.env import AbrEnv, EnvConfig, content_tables
from nerve_learning.rl.evaluate import play
from nerve_learning.rl.export import OnnxPolicy, export, random_obs, training_table_path, verify, write_training_table
from nerve_learning.rl.train import TrainConfig, train

TRACES = REPO.parent / "shared" / "data" / "traces"


@pytest.fixture(scope="module")
def families() -> list[sim.Family]:
    # two traces of each source of every family: every network type, quick to read
    fams = sim.families(TRACES, limit=2)
    assert len(fams) >= 2, f"no trace families under {TRACES}"
    return fams


def test_the_environment_passes_gymnasiums_checker(families: list[sim.Family]) -> None:
    env = AbrEnv([f.traces for f in families], seed=1)
    check_env(env, skip_render_check=True)
    obs, info = env.reset(seed=3)
    (at,) = [off for name, off, _ in env.layout() if name == "preference_weight"]
    assert obs.shape == env.observation_space.shape and obs[at] == pytest.approx(info["preference"])


def test_episodes_can_read_every_content_table_and_evaluation_the_generic_one(families: list[sim.Family]) -> None:
    # The policy reads the quality table as features; training may draw one of the shipped
    # tables per episode (generic and the five content types), evaluation plays the generic one.
    cfg = EnvConfig(tables=content_tables())
    assert len(cfg.tables) == 5 and all(Path(t).is_file() for t in cfg.tables), cfg.tables
    assert EnvConfig.plain().tables == () and EnvConfig().tables == ()
    (at, n) = next((off, length) for name, off, length in AbrEnv([families[0].traces], cfg=EnvConfig.plain()).layout()
                   if name == "quality_over_100")
    seen = set()
    env = AbrEnv([families[0].traces], cfg=cfg, seed=5)
    for k in range(40):
        obs, _ = env.reset(seed=k)
        seen.add(tuple(np.round(obs[at:at + n], 4)))
    assert len(seen) == 6, f"{len(seen)} distinct tables in 40 episodes"
    plain = AbrEnv([families[0].traces], cfg=EnvConfig.plain(), seed=5)
    assert len({tuple(np.round(plain.reset(seed=k)[0][at:at + n], 4)) for k in range(10)}) == 1


def test_perturbed_tables_keep_the_ladder_and_move_the_features(families: list[sim.Family], tmp_path: Path) -> None:
    from nerve_learning.paths import ABR_TABLES
    from nerve_learning.rl.tables import write_perturbed

    generic = ABR_TABLES / "pensieve_generic_nervesr.json"
    paths = write_perturbed([generic], 12, tmp_path, seed=4)
    src = json.loads(generic.read_text())
    gains = []
    for p in paths:
        t = json.loads(Path(p).read_text())
        assert [r["bitrate_kbps"] for r in t["rungs"]] == [r["bitrate_kbps"] for r in src["rungs"]]
        base = [r["vmaf"] for r in t["rungs"]]
        assert all(b > a for a, b in zip(base, base[1:])), f"classical VMAF must rise with the rung: {base}"
        gains += [lv["vmaf"] - r["vmaf"] for r in t["rungs"] for lv in r["levels"]]
    assert min(gains) < 0 < max(gains), "enhancement sometimes loses, sometimes gains"
    # the bindings take them as tables of the same ladder, and episodes read them
    env = AbrEnv([families[0].traces], cfg=EnvConfig(tables=paths), seed=1)
    (at, n) = next((off, length) for name, off, length in env.layout() if name == "quality_over_100")
    assert len({tuple(np.round(env.reset(seed=k)[0][at:at + n], 4)) for k in range(20)}) > 5


def test_the_synthetic_family_holds_steady_links_and_troughs() -> None:
    fam = synthetic.family(seed=3, n=10, seconds=300)
    assert fam.name == synthetic.FAMILY and len(fam.traces) == 10
    rates = [np.asarray(t.bps) for t in fam.traces]
    assert all(len(r) == 300 and (r > 0).all() for r in rates)
    steady = rates[0::2]
    troughs = rates[1::2]
    assert all(r.min() == r.max() for r in steady)
    # each trough link starts fast, falls into a trough and comes back
    for r in troughs:
        slow = np.flatnonzero(r <= 1.5e6)
        assert r[0] >= 2e6 and slow.size, r
        assert (r[slow[0]:] >= 2e6).any(), "never back from the first trough"
    again = synthetic.family(seed=3, n=10, seconds=300)
    assert all(np.array_equal(np.asarray(a.bps), np.asarray(b.bps)) for a, b in zip(fam.traces, again.traces))


def _play(env: AbrEnv, action: int) -> tuple[float, dict[str, float]]:
    env.reset(seed=0)
    total, done, info = 0.0, False, {}
    while not done:
        _, r, term, trunc, info = env.step(action)
        total += r
        done = term or trunc
    return total, info["episode"]


def test_the_reward_answers_to_the_preference_weight(families: list[sim.Family]) -> None:
    # One slow trace, one fixed action that enhances every chunk it can (the lowest rung at the
    # top level): the sessions are the same at weights 0 and 0.5, so the balanced viewer's return
    # must be lower by the priced energy, and the quality viewer's must be the session's QoE.
    # Battery saver also downloads in bursts (the player's setting): the same choices cost less.
    slow = next(f for f in families if "3g" in f.name).traces[:1]
    quality = AbrEnv([slow], cfg=EnvConfig.plain(), weight=0.0)
    balanced = AbrEnv([slow], cfg=EnvConfig.plain(), weight=0.5)
    saver = AbrEnv([slow], cfg=EnvConfig.plain(), weight=1.0)
    enhance = quality.levels - 1  # rung 0, top level
    ret_q, session_q = _play(quality, enhance)
    ret_b, session_b = _play(balanced, enhance)
    _, session_s = _play(saver, enhance)
    assert session_q["enhanced_chunks"] > 0, "the fixed action should have enhanced some chunks"
    assert session_q["energy_j"] == pytest.approx(session_b["energy_j"])
    assert ret_b < ret_q - 1e-3, (ret_b, ret_q)
    assert session_s["energy_j"] < session_q["energy_j"] - 1.0, (session_s, session_q)
    # at weight 0 the return is the session's QoE_vmaf over the scored chunks, / 100
    scored = quality.chunks - 1
    assert ret_q * 100 / scored == pytest.approx(session_q["qoe_quality"], rel=1e-6, abs=1e-6)


def test_a_tiny_ppo_policy_trains_and_its_onnx_export_acts_as_torch(families: list[sim.Family], tmp_path: Path) -> None:
    cfg = TrainConfig(timesteps=3072, n_envs=4, n_steps=256, batch_size=256, n_epochs=2, seed=0)
    trained = train([f.traces for f in families], cfg)
    assert trained.timesteps >= 3072
    path = export(trained.model, trained.vecnorm, tmp_path / "ppo.onnx")
    # random observations over the whole normalised range, and real ones from a session
    env = AbrEnv([f.traces for f in families], seed=5)
    real = [env.reset(seed=5)[0]]
    for a in range(40):
        obs, _, term, _, _ = env.step(a % int(env.action_space.n))
        real.append(obs)
        if term:
            break
    obs = np.vstack([random_obs(trained.vecnorm, 256, np.random.default_rng(0)), np.asarray(real)])
    check = verify(trained.model, trained.vecnorm, path, obs)
    assert check.ok, check
    # The exported graph plays one session twice: stepped through the gymnasium wrapper, and
    # inside the simulator's own `run` as nerve-abr's `ppo` policy (the element's code). Same
    # features, same decisions, so the same session scores.
    policy = OnnxPolicy(path)
    trace = next(f for f in families if "fcc" in f.name).traces[:1]
    stepped = AbrEnv([trace], cfg=EnvConfig.plain(), weight=0.0)
    o, _ = stepped.reset(seed=0)
    done, info = False, {}
    while not done:
        o, _, done, _, info = stepped.step(int(policy.act(o)[0]))
    ran = play(sim.make_env(trace), policy, 0, "quality")
    for k in ("qoe_quality", "rebuffer_s", "energy_j", "switches", "enhanced_chunks"):
        assert info["episode"][k] == pytest.approx(ran[k], rel=1e-9, abs=1e-9), k


def test_a_policy_reads_the_training_table_shipped_beside_its_graph(families: list[sim.Family], tmp_path: Path) -> None:
    # A policy trained on one table met its entries as constants: wherever it plays (the element,
    # the simulator, these bindings) its features read that table, shipped beside the graph
    # (`ppo.table.json`), and the environment's table only shields and scores.
    import nerveabr_py

    onnx = tmp_path / "ppo.onnx"
    side = write_training_table(onnx, ())
    assert side == training_table_path(onnx) == tmp_path / "ppo.table.json"
    assert side.read_text() == nerveabr_py.DEFAULT_TABLE
    # a content table beside it: the actor sees its qualities, not the environment's generic ones
    content = json.loads(Path(content_tables()[0]).read_text())
    side.write_text(json.dumps(content))
    env = sim.make_env(families[0].traces[:1])
    seen: dict[str, list[list[float]]] = {"env": [], "trained": []}

    def lowest(key: str):  # noqa: ANN202 (an actor that records what it was shown)
        return lambda obs: (seen[key].append(list(obs)), 0)[1]

    env.run_actor(lowest("env"), 0)
    env.run_actor(lowest("trained"), 0, model=str(onnx))
    rungs, levels = len(content["rungs"]), 2
    at = 3 + 2 * nerveabr_py.HISTORY + rungs  # quality per (rung, level) / 100, rung-major
    want = [v for r in content["rungs"] for v in (r["vmaf"] / 100, r["levels"][0]["vmaf"] / 100 if r["levels"] else 0.0)]
    assert seen["trained"][0][at:at + rungs * levels] == pytest.approx(want, abs=1e-6)
    assert seen["env"][0][at:at + rungs * levels] != pytest.approx(want, abs=1e-6)
    # a policy that drew several tables reads the stream's: no file, and a stale one goes
    assert write_training_table(onnx, tuple(content_tables())) is None
    assert not side.exists()


def test_imitation_learns_the_planners_choices_and_ppo_starts_from_them(families: list[sim.Family],
                                                                       tmp_path: Path) -> None:
    """DAgger from the `nerve` planner (imitate.py): the teacher's advice followed is the
    planner's own session, a few hundred imitated sessions make the network pick the planner's
    choice on most held-out states (chance is 1 in 12), the imitated network plays close to the
    planner, and PPO then starts from it (its weights are kept to compare)."""
    from nerve_learning.rl.imitate import ImitationConfig
    from nerve_learning.rl.train import export_imitated

    # the advice, followed, is the planner's session (the bindings' teacher is the planner)
    env = sim.make_env(families[0].traces, teacher="nerve")
    obs, info = env.reset(trace=0, preference=0.0)
    done = False
    while not done:
        obs, _, done, _, info = env.step(info["teacher_action"])
    assert info["episode"]["qoe_quality"] == pytest.approx(env.run_policy("nerve", 0, preference="quality")["qoe_quality"])
    with pytest.raises(ValueError, match="teacher"):
        sim.make_env(families[0].traces, teacher="bola")

    groups = [f.traces for f in families]
    im = ImitationConfig(rounds=2, episodes_per_round=160, epochs=10, envs=8)
    # the table's 4 s chunks only: a few hundred sessions spread over 1-4 s chunks teach each less
    cfg = TrainConfig(timesteps=512, n_envs=2, n_steps=256, batch_size=128, n_epochs=2, seed=5, imitation=im,
                      env=EnvConfig(chunk_choices=()))
    trained = train(groups, cfg)
    rounds = trained.imitation["rounds"] if trained.imitation else []
    assert [r["samples"] for r in rounds] == [160 * 47, 320 * 47]
    assert rounds[-1]["held_out_agreement"] > 0.6, rounds
    assert rounds[-1]["learner_agrees"] > 0.5, rounds
    onnx = export_imitated(trained, tmp_path / "imitated.onnx")
    assert onnx is not None
    # on the first trace of each family, unaugmented: the imitated network near the planner
    env = sim.make_env([f.traces[0] for f in families])
    policy = OnnxPolicy(onnx)
    mine = np.mean([play(env, policy, i, "quality")["qoe_quality"] for i in range(len(families))])
    teacher = np.mean([env.run_policy("nerve", i, preference="quality")["qoe_quality"] for i in range(len(families))])
    random = np.mean([env.run_policy("bb", i, preference="quality")["qoe_quality"] for i in range(len(families))])
    assert mine > teacher - 0.5 * (teacher - random), (mine, teacher, random)


def test_the_shield_holds_a_greedy_actor_to_the_planners_safe_rungs(families: list[sim.Family]) -> None:
    # An actor that always wants the top rung on slow 3G sessions: alone it stalls; shielded
    # (as the element plays `ppo` by default) its rung is capped where the planner sees a stall,
    # so it stalls less, and the result counts the decisions the shield lowered.
    slow = next(f for f in families if "3g" in f.name).traces
    env = sim.make_env(slow)
    rungs, levels = 6, 2
    top = (rungs - 1) * levels  # top rung, level 0
    alone = [env.run_actor(lambda _obs: top, i, preference=0.0) for i in range(len(slow))]
    shielded = [env.run_actor(lambda _obs: top, i, preference=0.0, shield=True) for i in range(len(slow))]
    assert "shielded" not in alone[0]
    assert sum(r["shielded"] for r in shielded) > 0
    assert sum(r["rebuffer_s"] for r in shielded) < sum(r["rebuffer_s"] for r in alone), (shielded, alone)


def test_the_shield_caps_where_it_is_told(families: list[sim.Family]) -> None:
    # `shield_at`: the safe set, the planner's own rung, climbing with its consent (the default,
    # as the element plays it) or its shadow session (scripts/ppo_shield_choice.py compares them);
    # a greedy actor capped at the planner's rung fetches fewer bits than one capped at the safe
    # set, and a name the shield does not know is refused rather than ignored.
    slow = next(f for f in families if "3g" in f.name).traces
    env = sim.make_env(slow)
    top = 5 * 2
    runs = {at: [env.run_actor(lambda _obs: top, i, preference=0.0, shield=True, shield_at=at) for i in range(len(slow))]
            for at in ("safe-set", "planner-rung", "planner-climb", "shadow", None)}
    at_safe, at_planner = runs["safe-set"], runs["planner-rung"]
    assert all(r["shielded"] > 0 for r in at_safe + at_planner)
    assert sum(r["bits_mb"] for r in at_planner) < sum(r["bits_mb"] for r in at_safe), (at_planner, at_safe)
    assert runs[None] == runs["planner-climb"], "the default shield is planner-climb"
    assert runs["shadow"] != runs["safe-set"], "the shadow session changes some decision"
    with pytest.raises(ValueError, match="unknown shield"):
        env.run_actor(lambda _obs: top, 0, shield=True, shield_at="nearest")
