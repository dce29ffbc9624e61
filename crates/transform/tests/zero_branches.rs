//! `passes::drop_zero_branches` on small EfficientNet-like networks whose residual branch ends in
//! an all-zero convolution (an identity block, as in the linear-trunk B0): the pruned network
//! computes the same logits, its global certificates are never looser, and sampled image pairs
//! of the ORIGINAL network stay below the pruned network's certified bounds.

use zonocert_network::exec::Executor;
use zonocert_network::passes::{drop_zero_branches, live_values};
use zonocert_network::{Network, Op};
use zonocert_transform::sensitivity::{probabilities, Certifier, Method, Region, Settings};

mod support;
use support::{image, tiny_net, Rng};

/// `tiny_net` with its residual branch's last convolution (`project`) set to exactly zero.
fn identity_block_net(seed: u64) -> Network {
    let mut net = tiny_net(seed, 3, 2, false);
    let project = net.layers.iter_mut().find(|l| l.name == "project").expect("tiny_net has a project conv");
    let Op::Conv(conv) = &mut project.op else { panic!("project is a convolution") };
    conv.weight.iter_mut().for_each(|w| *w = 0.0);
    conv.bias.iter_mut().for_each(|b| *b = 0.0);
    net
}

#[test]
fn a_zero_branch_is_removed_and_the_logits_are_unchanged() {
    for seed in 0..4u64 {
        let net = identity_block_net(0x2E60 + seed);
        let (pruned, dropped) = drop_zero_branches(net.clone());
        assert_eq!(dropped, 1, "seed {seed}: the identity block's addition is removed");
        pruned.validate().expect("the pruned network is valid");
        // The branch (the depthwise swish, the squeeze-excite block, the projection) and the
        // addition go; the depthwise convolution stays (the addition's other operand).
        let names: Vec<&str> = pruned.layers.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["normalise", "pad", "stem", "stem_act", "dw", "pool", "flatten", "fc"], "seed {seed}");
        assert!(pruned.squeeze_excite.is_empty());
        let (full, short) = (Executor::<f64>::new(&net), Executor::<f64>::new(&pruned));
        let mut rng = Rng(seed + 17);
        for _ in 0..20 {
            let x: Vec<f64> = image(&mut rng).iter().map(|&b| b as f64 / 255.0).collect();
            // x + 0 = x exactly, and every later operation is the same: bit for bit.
            assert_eq!(full.forward(&x, 1), short.forward(&x, 1), "seed {seed}");
        }
    }
}

/// `live_values` marks exactly the values the pruned network keeps: a zero branch's values are
/// dead, everything else (the input, the trunk, the output) is live.
#[test]
fn the_values_a_zero_branch_computes_are_dead() {
    let net = identity_block_net(0x2E80);
    let live = live_values(&net);
    let (pruned, _) = drop_zero_branches(net.clone());
    let kept: std::collections::HashSet<&str> = pruned.layers.iter().map(|l| l.name.as_str()).collect();
    assert!(live[0], "the input is live");
    for (k, layer) in net.layers.iter().enumerate() {
        // The addition stays live (its value is the trunk's), though the pruning replaces it
        // by its other operand, and so does the zero map's own output, which the addition reads.
        let expected = kept.contains(layer.name.as_str()) || layer.op == Op::Add || layer.name == "project";
        assert_eq!(live[k + 1], expected, "layer '{}'", layer.name);
    }
    assert!(live.iter().filter(|&&l| !l).count() >= 3, "the branch's values before the zero map are dead");
    assert!(live_values(&tiny_net(0x2E81, 3, 2, false)).iter().all(|&l| l), "a network without zero branches is all live");
}

#[test]
fn a_branch_with_one_nonzero_weight_is_kept() {
    let mut net = identity_block_net(0x2E70);
    let project = net.layers.iter_mut().find(|l| l.name == "project").expect("project conv");
    let Op::Conv(conv) = &mut project.op else { panic!("project is a convolution") };
    conv.bias[1] = 1e-300;
    let (pruned, dropped) = drop_zero_branches(net.clone());
    assert_eq!(dropped, 0);
    assert_eq!(pruned.layers.len(), net.layers.len());
    // A network without any zero branch is left as it is.
    let plain = tiny_net(0x2E71, 3, 2, false);
    assert_eq!(drop_zero_branches(plain.clone()).0.layers, plain.layers);
}

#[test]
fn pruned_global_certificates_are_never_looser_and_cover_pairs_of_the_original() {
    for seed in 0..3u64 {
        let net = identity_block_net(0x2E80 + seed);
        let (pruned, _) = drop_zero_branches(net.clone());
        let exec = Executor::<f64>::new(&net);
        let mut rng = Rng(seed + 99);
        for method in [Method::DiffZonotope, Method::DiffInterval] {
            let settings = Settings { method, region_budget: 512, diff_budget: 256, carry_errors: true, ..Settings::default() };
            let (a, b) = (Certifier::new(&net, Region::Global, settings), Certifier::new(&pruned, Region::Global, settings));
            let mut informative = 0;
            for pixel in [0, 300, 406, 783, rng.below(784)] {
                let (full, short) = (a.pixel(pixel).upper, b.pixel(pixel).upper);
                assert!(short <= full * (1.0 + 1e-9) + 1e-15, "seed {seed} {method:?} pixel {pixel}: pruned {short} > full {full}");
                informative += usize::from(short < 0.5);
                for _ in 0..60 {
                    let bytes = image(&mut rng);
                    let mut flipped = bytes.clone();
                    flipped[pixel] ^= 1;
                    let x: Vec<f64> = bytes.iter().map(|&v| v as f64 / 255.0).collect();
                    let y: Vec<f64> = flipped.iter().map(|&v| v as f64 / 255.0).collect();
                    let (p, q) = (probabilities(&exec, &exec.forward(&x, 1)), probabilities(&exec, &exec.forward(&y, 1)));
                    let moved = p.iter().zip(&q).map(|(u, v)| (u - v).abs()).fold(0.0, f64::max);
                    assert!(moved <= short, "seed {seed} {method:?} pixel {pixel}: pair moves {moved} > certified {short}");
                }
            }
            assert!(informative >= 3, "seed {seed} {method:?}: the check needs informative bounds ({informative} of 5 below 0.5)");
        }
    }
}
