"""Fingerprints of whole training runs, pinned on v0.3 (31675ae) before the modules were split:
the split moved code, not numbers. Tabular runs are pinned exactly (a SHA-256 of every
output's bytes); neural runs to rtol 1e-12 (their last bits follow the CPU's BLAS kernels).
A later change to a method or the update re-pins just the runs it moves, and says so:
0.4's CoPPO gradient through the partners' ratios (the default, coppo_detach=False) re-pinned
climbing-coppo, twostep-coppo and spread3-coppo; their 0.3 values stand as the *-detach runs
(grid-coppo and climbing-coppo-inner did not move: with n = 2 and v = u the terms coincide);
A2PO's semi-greedy order (the default) re-pinned every a2po run, 0.3's kept as *-random.
"""

import hashlib

import numpy as np
import pytest

import asae_neural as neural
import asae_probe
import asae_tabular as tabular
import envs
from test_tabular import NoTables

GAMES = {
    "climbing": envs.MatrixGame.climbing,
    "penalty3": lambda: envs.MatrixGame.penalty(n_agents=3),
    "count": lambda: envs.MatrixGame.penalty(n_agents=3),
    "twostep": envs.TwoStepGame,
    "twostep-step": lambda: NoTables(envs.TwoStepGame()),
    "grid": envs.GridForaging,
}

#: (game, method, TabularConfig fields, bias probe?) → SHA-256 prefix of the run's outputs
TABULAR = {
    'climbing-async': (
        'climbing',
        'async',
        {'iterations': 12, 'n_envs': 8, 'rollout_len': 4, 'seed': 3},
        False,
        '8d70abe4d12b0b9651cfae440fa5a2b9',
    ),
    'climbing-asae': (
        'climbing',
        'asae',
        {'iterations': 12, 'n_envs': 8, 'rollout_len': 4, 'seed': 3},
        False,
        'd57fccc8fd9724934242c698600eef81',
    ),
    'climbing-happo': (
        'climbing',
        'happo',
        {'iterations': 12, 'n_envs': 8, 'rollout_len': 4, 'seed': 3},
        False,
        '74e1b7e1597a7ada29a51dc11f7fa69a',
    ),
    'climbing-coma': (
        'climbing',
        'coma',
        {'iterations': 12, 'n_envs': 8, 'rollout_len': 4, 'seed': 3},
        False,
        'f6a595c05679e29ce05f5c05797b9151',
    ),
    'climbing-exact_sync': (
        'climbing',
        'exact_sync',
        {'iterations': 12, 'n_envs': 8, 'rollout_len': 4, 'seed': 3},
        False,
        '93cbd2b500f2b998f89277af72fdf6ea',
    ),
    'climbing-exact_async': (
        'climbing',
        'exact_async',
        {'iterations': 12, 'n_envs': 8, 'rollout_len': 4, 'seed': 3},
        False,
        '44315374f51a170d7787b7de00ec2065',
    ),
    'climbing-coppo': (
        'climbing',
        'coppo',
        {'iterations': 12, 'n_envs': 8, 'rollout_len': 4, 'seed': 3},
        False,
        'e517691f12f7139801d29bfcd0a879a9',
    ),
    'climbing-coppo-detach': (
        'climbing',
        'coppo',
        {'iterations': 12, 'n_envs': 8, 'rollout_len': 4, 'seed': 3, 'coppo_detach': True},
        False,
        '8d8ad04f2918e8f98ec0e57f3b3c1252',
    ),
    'climbing-a2po': (
        'climbing',
        'a2po',
        {'iterations': 12, 'n_envs': 8, 'rollout_len': 4, 'seed': 3},
        False,
        'd48627e83731a437341eceb6451768db',
    ),
    'climbing-a2po-random': (
        'climbing',
        'a2po',
        {'iterations': 12, 'n_envs': 8, 'rollout_len': 4, 'seed': 3, 'a2po_order': 'random'},
        False,
        'abe636387da422b30ed8384a6a3226a4',
    ),
    'twostep-async': (
        'twostep',
        'async',
        {'iterations': 12, 'n_envs': 8, 'rollout_len': 4, 'seed': 3, 'gamma': 0.9},
        False,
        'c28afcd0424153678c1670754544feba',
    ),
    'grid-async': (
        'grid',
        'async',
        {'iterations': 12, 'n_envs': 4, 'rollout_len': 4, 'seed': 3},
        False,
        '68310a81a5cd1f1ad4c1a4b491c7a28b',
    ),
    'twostep-asae': (
        'twostep',
        'asae',
        {'iterations': 12, 'n_envs': 8, 'rollout_len': 4, 'seed': 3, 'gamma': 0.9},
        False,
        'ff22cf2e654b61cafeff09d1120be74c',
    ),
    'grid-asae': (
        'grid',
        'asae',
        {'iterations': 12, 'n_envs': 4, 'rollout_len': 4, 'seed': 3},
        False,
        '68310a81a5cd1f1ad4c1a4b491c7a28b',
    ),
    'twostep-happo': (
        'twostep',
        'happo',
        {'iterations': 12, 'n_envs': 8, 'rollout_len': 4, 'seed': 3, 'gamma': 0.9},
        False,
        '49ec77063a9d298271123ce718da3805',
    ),
    'grid-happo': (
        'grid',
        'happo',
        {'iterations': 12, 'n_envs': 4, 'rollout_len': 4, 'seed': 3},
        False,
        'df9542cee745aa8af7e5e9fbd5d57396',
    ),
    'twostep-coma': (
        'twostep',
        'coma',
        {'iterations': 12, 'n_envs': 8, 'rollout_len': 4, 'seed': 3, 'gamma': 0.9},
        False,
        'fd0aa3e4543ba0c34f2f27c47425a9c9',
    ),
    'grid-coma': (
        'grid',
        'coma',
        {'iterations': 12, 'n_envs': 4, 'rollout_len': 4, 'seed': 3},
        False,
        '68310a81a5cd1f1ad4c1a4b491c7a28b',
    ),
    'twostep-coppo': (
        'twostep',
        'coppo',
        {'iterations': 12, 'n_envs': 8, 'rollout_len': 4, 'seed': 3, 'gamma': 0.9},
        False,
        'ba827374a72c38cec6c103c6435e3da7',
    ),
    'twostep-coppo-detach': (
        'twostep',
        'coppo',
        {
            'iterations': 12,
            'n_envs': 8,
            'rollout_len': 4,
            'seed': 3,
            'gamma': 0.9,
            'coppo_detach': True,
        },
        False,
        'ed8980992d2d982f369ccc8673288aaa',
    ),
    'grid-coppo': (
        'grid',
        'coppo',
        {'iterations': 12, 'n_envs': 4, 'rollout_len': 4, 'seed': 3},
        False,
        '68310a81a5cd1f1ad4c1a4b491c7a28b',
    ),
    'twostep-a2po': (
        'twostep',
        'a2po',
        {'iterations': 12, 'n_envs': 8, 'rollout_len': 4, 'seed': 3, 'gamma': 0.9},
        False,
        '8247054c8af5fa724a86253f38ef3bce',
    ),
    'twostep-a2po-random': (
        'twostep',
        'a2po',
        {
            'iterations': 12,
            'n_envs': 8,
            'rollout_len': 4,
            'seed': 3,
            'gamma': 0.9,
            'a2po_order': 'random',
        },
        False,
        '757d7165585b2d6275539270826f8d01',
    ),
    'grid-a2po': (
        'grid',
        'a2po',
        {'iterations': 12, 'n_envs': 4, 'rollout_len': 4, 'seed': 3},
        False,
        '02d115550e4a98450c83b95c326d361e',
    ),
    'grid-a2po-random': (
        'grid',
        'a2po',
        {'iterations': 12, 'n_envs': 4, 'rollout_len': 4, 'seed': 3, 'a2po_order': 'random'},
        False,
        'df9542cee745aa8af7e5e9fbd5d57396',
    ),
    'penalty3-asae-ratios': (
        'penalty3',
        'asae',
        {
            'iterations': 12,
            'n_envs': 8,
            'rollout_len': 4,
            'seed': 3,
            'track_ratios': True,
            'clip_scale': 'root_n',
        },
        False,
        '04cb2b394c581bb5db866aa835c97099',
    ),
    'penalty3-a2po-bias': (
        'penalty3',
        'a2po',
        {'iterations': 12, 'n_envs': 8, 'rollout_len': 4, 'seed': 3},
        True,
        '1462209507161590ac870462b0f28241',
    ),
    'penalty3-a2po-bias-random': (
        'penalty3',
        'a2po',
        {'iterations': 12, 'n_envs': 8, 'rollout_len': 4, 'seed': 3, 'a2po_order': 'random'},
        True,
        '22a07234217e059f61561c87af6e6867',
    ),
    'climbing-happo-bias-record': (
        'climbing',
        'happo',
        {'iterations': 12, 'n_envs': 8, 'rollout_len': 4, 'seed': 3, 'record_policies': True},
        True,
        'e3d692e6f4bbb65940719aa4a1684cde',
    ),
    'climbing-asae-joint': (
        'climbing',
        'asae',
        {
            'iterations': 12,
            'n_envs': 8,
            'rollout_len': 4,
            'seed': 3,
            'clip_ratio': 'joint',
            'sync_clip': None,
        },
        False,
        '378df37f1597aee542dd1c0c11a65606',
    ),
    'climbing-coppo-inner': (
        'climbing',
        'coppo',
        {
            'iterations': 12,
            'n_envs': 8,
            'rollout_len': 4,
            'seed': 3,
            'coppo_inner_eps': None,
            'clip_eps': 0.3,
            'entropy_coef': 0.0,
        },
        False,
        '63e43f4cd8ae8cfce128de880e9cf5f3',
    ),
    'twostep-step-happo': (
        'twostep-step',
        'happo',
        {'iterations': 12, 'n_envs': 8, 'rollout_len': 4, 'seed': 3},
        False,
        'ae87166736b42265b3c707e8e4c59e30',
    ),
    'twostep-step-async': (
        'twostep-step',
        'async',
        {'iterations': 12, 'n_envs': 8, 'rollout_len': 4, 'seed': 3, 'record_policies': True},
        False,
        'f70a60f0d8d0d4af8bbf841d84535925',
    ),
    'count-exact_sync': (
        'count',
        'exact_sync',
        {'iterations': 12, 'n_envs': 8, 'rollout_len': 4, 'seed': 3},
        False,
        '52aec88123e6071069781458572d3390',
    ),
    'count-a2po': (
        'count',
        'a2po',
        {
            'iterations': 12,
            'n_envs': 8,
            'rollout_len': 4,
            'seed': 3,
            'a2po_clip_floor': 1.0,
            'a2po_trace_cbar': 2.0,
        },
        False,
        'd7d701b05a35a59be873b0e5401d2b07',
    ),
    'count-a2po-random': (
        'count',
        'a2po',
        {
            'iterations': 12,
            'n_envs': 8,
            'rollout_len': 4,
            'seed': 3,
            'a2po_clip_floor': 1.0,
            'a2po_trace_cbar': 2.0,
            'a2po_order': 'random',
        },
        False,
        '4724ad7f33e684e8a217eec07e98f403',
    ),
}

#: (method, NetConfig fields) → the run's curve, returns and parameter sums
NEURAL = {
    'spread3-async': (
        'async',
        {
            'iterations': 3,
            'n_envs': 4,
            'rollout_len': 5,
            'seed': 2,
            'epochs': 2,
            'minibatches': 2,
            'hidden': 8,
        },
        [
            -11.634273940362688,
            -12.107073867823306,
            -10.867770424699687,
            -14.95103080620359,
            -15.038153052398759,
            43.64745715427071,
            32.68919746806285,
            25.547655835767323,
            110.740590931956,
            111.65661607005636,
            111.34932773659207,
            75.82757215288908,
            181.27013758581504,
        ],
    ),
    'spread3-asae': (
        'asae',
        {
            'iterations': 3,
            'n_envs': 4,
            'rollout_len': 5,
            'seed': 2,
            'epochs': 2,
            'minibatches': 2,
            'hidden': 8,
        },
        [
            -11.634273940362688,
            -12.107073867823306,
            -10.867770424699687,
            -14.951489131249605,
            -15.038153052398759,
            43.647491637796676,
            32.68927309529704,
            25.547761936557123,
            110.74035623101085,
            111.65703054102167,
            111.34912336190834,
            75.82757215288908,
            181.27013758581504,
        ],
    ),
    'spread3-happo': (
        'happo',
        {
            'iterations': 3,
            'n_envs': 4,
            'rollout_len': 5,
            'seed': 2,
            'epochs': 2,
            'minibatches': 2,
            'hidden': 8,
        },
        [
            -11.634273940362688,
            -11.622101779007172,
            -9.580795275207027,
            -14.85663324546501,
            -15.126098966431869,
            43.62614343106556,
            32.694526519289944,
            25.601813940196145,
            110.62915949931529,
            111.70893399444498,
            111.35661724113577,
            75.83028076134795,
            181.2144516868724,
        ],
    ),
    'spread3-coppo': (
        'coppo',
        {
            'iterations': 3,
            'n_envs': 4,
            'rollout_len': 5,
            'seed': 2,
            'epochs': 2,
            'minibatches': 2,
            'hidden': 8,
        },
        [
            -11.634273940362688,
            -12.107073867823306,
            -10.867770424699687,
            -14.951489131249605,
            -15.038153052398759,
            43.64786079797143,
            32.68777440001142,
            25.546951765764067,
            110.74326035072013,
            111.65866263490071,
            111.3492641067892,
            75.82757215288908,
            181.27013758581504,
        ],
    ),
    'spread3-coppo-detach': (
        'coppo',
        {
            'iterations': 3,
            'n_envs': 4,
            'rollout_len': 5,
            'seed': 2,
            'epochs': 2,
            'minibatches': 2,
            'hidden': 8,
            'coppo_detach': True,
        },
        [
            -11.634273940362688,
            -12.107073867823306,
            -10.867770424699687,
            -14.951489131249605,
            -15.038153052398759,
            43.647491637796676,
            32.68927309529704,
            25.547761936557123,
            110.74035623101085,
            111.65703054102167,
            111.34912336190834,
            75.82757215288908,
            181.27013758581504,
        ],
    ),
    'spread3-a2po': (
        'a2po',
        {
            'iterations': 3,
            'n_envs': 4,
            'rollout_len': 5,
            'seed': 2,
            'epochs': 2,
            'minibatches': 2,
            'hidden': 8,
        },
        [
            -11.634273940362688,
            -12.10269389997442,
            -10.404449221595609,
            -14.498415345830821,
            -14.34044058596353,
            43.615928175658695,
            32.73351702893813,
            25.584484530876537,
            110.699635930066,
            111.76026752906225,
            111.37036006354575,
            75.80546495686838,
            181.23556939485104,
        ],
    ),
    'spread3-a2po-random': (
        'a2po',
        {
            'iterations': 3,
            'n_envs': 4,
            'rollout_len': 5,
            'seed': 2,
            'epochs': 2,
            'minibatches': 2,
            'hidden': 8,
            'a2po_order': 'random',
        },
        [
            -11.634273940362688,
            -11.622101779007172,
            -9.580795275207027,
            -14.855120632761306,
            -15.126098966431869,
            43.62618346343418,
            32.694335768160734,
            25.601666412540368,
            110.62929733133434,
            111.70918071426559,
            111.35665741814141,
            75.83028076134795,
            181.2144516868724,
        ],
    ),
    'spread3-async-shared': (
        'async',
        {
            'iterations': 3,
            'n_envs': 4,
            'rollout_len': 5,
            'seed': 2,
            'epochs': 2,
            'minibatches': 2,
            'hidden': 8,
            'share_actor': True,
        },
        [
            -11.551644988153921,
            -12.107073867823306,
            -10.867770424699687,
            -15.466417862951236,
            -15.055524851890155,
            40.77835109952143,
            116.87481876091852,
            66.78905266685867,
            182.64803009650547,
        ],
    ),
    'spread3-asae-ratios': (
        'asae',
        {
            'iterations': 3,
            'n_envs': 4,
            'rollout_len': 5,
            'seed': 2,
            'epochs': 2,
            'minibatches': 2,
            'hidden': 8,
            'track_ratios': True,
            'value_clip': None,
            'huber_delta': None,
            'adv_norm': False,
        },
        [
            -11.634273940362688,
            -12.107073867823306,
            -10.867770424699687,
            -15.062142974705788,
            -15.041873986238521,
            43.6888636875194,
            32.773164831992666,
            25.579497225633535,
            110.7671982122726,
            111.76822360716889,
            111.4273936525979,
            75.82807947207661,
            181.2485841187136,
            0.0,
            0.0,
            0.9999737248373758,
        ],
    ),
}


def _digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(np.asarray(a, dtype=np.float64)).tobytes())
    return h.hexdigest()[:32]


def _tabular_digest(res) -> str:
    """Every output of a tabular run: curve, returns, critic, logits, bias, ratio statistics,
    recorded policies, in a fixed order."""
    parts = [res.mean_return, [res.greedy_return, res.stochastic_return], res.values]
    parts += list(res.logits)
    if res.bias:
        parts.append([res.bias[k] for k in sorted(res.bias)])
    if res.ratios:
        r = res.ratios
        parts.append(
            [r["ppo_clip_binds"], r["weight_clip_binds"], r["ess_fraction"], r["samples"]]
            + [r["log_w_quantiles"][p] for p in sorted(r["log_w_quantiles"])]
        )
    if res.policies:
        parts += [p for pol in res.policies for p in pol]
    return _digest(*parts)


def _neural_values(res) -> list:
    vals = [float(x) for x in res.mean_return] + [res.greedy_return, res.stochastic_return]
    vals += [float(p.sum()) for p in res.policy.params]
    vals += [float(np.abs(p).sum()) for p in res.policy.params]
    vals += [float(res.critic.sum()), float(np.abs(res.critic).sum())]
    if res.ratios:
        vals += [res.ratios[k] for k in ("ppo_clip_binds", "weight_clip_binds", "ess_fraction")]
    return vals


@pytest.mark.parametrize("key", sorted(TABULAR))
def test_tabular_runs_are_pinned(key):
    game, method, fields, bias, digest = TABULAR[key]
    run = asae_probe.train_with_bias if bias else tabular.train
    assert _tabular_digest(run(GAMES[game](), method, tabular.TabularConfig(**fields))) == digest


@pytest.mark.parametrize("key", sorted(NEURAL))
def test_neural_runs_are_pinned(key):
    import envs_spread

    method, fields, want = NEURAL[key]
    got = _neural_values(
        neural.train(
            envs_spread.Spread(n_agents=3, max_cycles=5), method, neural.NetConfig(**fields)
        )
    )
    assert len(got) == len(want)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
