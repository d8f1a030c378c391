//! File formats through the library: the reference UAI models, round trips, conversions.

use ebm::io::uai::{format_uai, parse_uai, read_pr, read_uai, write_uai};
use ebm::model::{EnergyModel, Factor, FactorGraph, Spin, spin_of_bit};
use ebm::rng::{from_seed, uniform_f64};
use rand::RngExt;

use crate::common::{tol, uai_reference_dir};

/// Every `.uai` file of the reference folder with its `.PR` answer (the bundled data/uai).
fn reference_models() -> Vec<(String, FactorGraph, f64)> {
    let dir = uai_reference_dir();
    let mut out = Vec::new();
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "uai"))
        .collect();
    paths.sort();
    for path in paths {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let graph = read_uai(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let pr = read_pr(&path.with_extension("uai.PR")).unwrap_or_else(|e| panic!("{name}: {e}"));
        out.push((name, graph, pr));
    }
    out
}

#[test]
fn reference_uai_files_read_with_the_documented_sizes() {
    let models = reference_models();
    if models.is_empty() {
        return;
    }
    // Sizes from the reference folder's README (variables) and the files' own headers.
    let expected: &[(&str, usize)] = &[
        ("DBN_11", 40),
        ("Grids_11", 100),
        ("Grids_12", 100),
        ("Grids_13", 100),
        ("Grids_14", 100),
        ("Grids_15", 400),
        ("Segmentation_12", 229),
    ];
    for &(name, vars) in expected {
        let (_, graph, pr) = models
            .iter()
            .find(|(n, _, _)| n == name)
            .unwrap_or_else(|| panic!("{name} missing from the reference folder"));
        assert_eq!(graph.num_vars(), vars, "{name}");
        assert_eq!(graph.max_arity(), 2, "{name} is pairwise");
        assert!(pr.is_finite(), "{name}");
        // Binary pairwise without zeros: every one has an Ising form.
        let mrf = graph
            .to_pairwise()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(mrf.fields().len(), vars);
    }
}

#[test]
fn reference_uai_files_survive_write_then_read_exactly() {
    let dir = tempfile::tempdir().unwrap();
    for (name, graph, _) in reference_models() {
        let path = dir.path().join(format!("{name}.uai"));
        write_uai(&path, &graph).unwrap();
        assert_eq!(read_uai(&path).unwrap(), graph, "{name}");
    }
}

/// DBN_11 is bipartite (20 + 20 variables): summing out one side in closed form and enumerating
/// the other (2^20 states, Gray code) gives its exact ln Z, to compare with the competition's
/// log10 Z. This checks the reader (scope order, table order, counts) against an outside answer.
#[test]
fn dbn_11_log_z_matches_its_pr_answer() {
    let Some((_, graph, pr)) = reference_models()
        .into_iter()
        .find(|(n, _, _)| n == "DBN_11")
    else {
        return;
    };
    let mrf = graph.to_pairwise().unwrap();
    let (na, nb) = (20usize, 20usize);
    // J[i][j] for i in side A = 0..20 and j in side B = 20..40; no edge may stay inside a side.
    let mut coupling = vec![vec![0.0; nb]; na];
    for &(i, j, w) in mrf.edges() {
        assert!(
            i < na && j >= na,
            "edge ({i}, {j}) does not cross the bipartition"
        );
        coupling[i][j - na] += w;
    }
    let h = mrf.fields();
    // Start with every spin of A at -1; a_j = h_j + sum_i J_ij s_i.
    let mut s = vec![-1.0f64; na];
    let mut a: Vec<f64> = (0..nb)
        .map(|j| h[na + j] - (0..na).map(|i| coupling[i][j]).sum::<f64>())
        .collect();
    let mut field_a: f64 = -h[..na].iter().sum::<f64>();
    let ln_2cosh = |x: f64| x.abs() + (-2.0 * x.abs()).exp().ln_1p();
    let mut acc = ebm::logspace::LogSumExp::new();
    for step in 0u64..(1 << na) {
        if step > 0 {
            let i = step.trailing_zeros() as usize;
            s[i] = -s[i];
            field_a += 2.0 * h[i] * s[i];
            for (aj, &w) in a.iter_mut().zip(&coupling[i]) {
                *aj += 2.0 * w * s[i];
            }
        }
        acc.add(field_a + a.iter().map(|&x| ln_2cosh(x)).sum::<f64>());
    }
    let ln_z = acc.value() - mrf.constant();
    let log10_z = ln_z / std::f64::consts::LN_10;
    // The .PR answer is printed with 4 decimals (rounding error <= 5e-5).
    assert!(
        (log10_z - pr).abs() <= tol::PR_FILE_ABS,
        "log10 Z = {log10_z}, .PR says {pr}"
    );
}

/// A random binary factor graph with unary and pair factors (positive tables).
fn random_pairwise_graph(n: usize, pairs: usize, seed: u64) -> FactorGraph {
    let mut rng = from_seed(seed);
    let mut factors = Vec::new();
    for i in 0..n {
        if rng.random_bool(0.7) {
            let t = (0..2).map(|_| 0.05 + 3.0 * uniform_f64(&mut rng)).collect();
            factors.push(Factor::new(vec![i], t).unwrap());
        }
    }
    for _ in 0..pairs {
        let i = rng.random_range(0..n);
        let j = (i + rng.random_range(1..n)) % n;
        let t = (0..4).map(|_| 0.05 + 3.0 * uniform_f64(&mut rng)).collect();
        factors.push(Factor::new(vec![i, j], t).unwrap());
    }
    FactorGraph::new(n, factors).unwrap()
}

#[test]
fn pairwise_form_gives_the_same_log_probability_ratios() {
    for seed in 0..5 {
        let graph = random_pairwise_graph(12, 30, seed);
        // Through the file format as well: the converted model of the re-read file.
        let mrf = parse_uai(&format_uai(&graph))
            .unwrap()
            .to_pairwise()
            .unwrap();
        let mut rng = from_seed(100 + seed);
        for _ in 0..200 {
            let x: Vec<u8> = (0..12).map(|_| rng.random_range(0..2u8)).collect();
            let y: Vec<u8> = (0..12).map(|_| rng.random_range(0..2u8)).collect();
            let sx: Vec<Spin> = x.iter().map(|&b| spin_of_bit(b)).collect();
            let sy: Vec<Spin> = y.iter().map(|&b| spin_of_bit(b)).collect();
            // ln p(x) - ln p(y) = ln w(x) - ln w(y) = -(E(sx) - E(sy)).
            let from_tables = graph.log_weight_bits(&x) - graph.log_weight_bits(&y);
            let from_ising = -(mrf.energy(&sx) - mrf.energy(&sy));
            let scale = 1.0 + from_tables.abs();
            assert!(
                (from_tables - from_ising).abs() <= tol::EXACT_REL * scale,
                "seed {seed}: {from_tables} vs {from_ising}"
            );
        }
    }
}

#[test]
fn rbm_safetensors_write_then_read_through_files() {
    use ebm::io::safetensors::{RbmFile, Tensor, read_rbm, write_rbm};
    let mut rng = from_seed(3);
    let (nv, nh) = (7, 5);
    let w = (0..nv * nh).map(|_| uniform_f64(&mut rng) - 0.5).collect();
    let b = (0..nv).map(|_| 3.0 * uniform_f64(&mut rng)).collect();
    let c = (0..nh).map(|_| -uniform_f64(&mut rng) / 7.0).collect();
    let mut file = RbmFile::new(ebm::model::Rbm::new(nv, nh, w, b, c).unwrap());
    file.metadata
        .insert("settings".into(), r#"{"cd_k":1,"epochs":2}"#.into());
    let velocity = (0..nv * nh).map(|k| k as f64 * 1e-3).collect();
    file.extra.insert(
        "velocity_weights".into(),
        Tensor {
            shape: vec![nv, nh],
            data: velocity,
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    write_rbm(&path, &file).unwrap();
    let back = read_rbm(&path).unwrap();
    assert_eq!(back.rbm, file.rbm);
    assert_eq!(back.extra, file.extra);
    assert_eq!(back.metadata["settings"], file.metadata["settings"]);
    assert_eq!(back.metadata["format"], "ebm-rbm");
    // Only the finished file is in the folder.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn every_dataset_format_round_trips_through_files_plain_and_gzipped() {
    use ebm::dataset::Dataset;
    use ebm::io::datasets::{read_dataset, write_dataset, write_dataset_txt};
    let mut rng = from_seed(11);
    let (rows, cols) = (9, 13);
    let bits: Vec<u8> = (0..rows * cols).map(|_| rng.random_range(0..2u8)).collect();
    let data = Dataset::new(rows, cols, bits).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let names = [
        "d.txt",
        "d.txt.gz",
        "d.csv",
        "d.csv.gz",
        "d.npy",
        "d.npy.gz",
        "d-idx2-ubyte",
        "d-idx2-ubyte.gz",
        "d.idx",
    ];
    for name in names {
        let path = dir.path().join(name);
        write_dataset(&path, &data).unwrap();
        assert_eq!(read_dataset(&path, None).unwrap(), data, "{name}");
    }
    // The .gz files really are compressed: gzip's magic bytes.
    let raw = std::fs::read(dir.path().join("d.txt.gz")).unwrap();
    assert_eq!(&raw[..2], &[0x1f, 0x8b]);
    // write_dataset_txt insists on a .txt name.
    assert!(write_dataset_txt(&dir.path().join("x.csv"), &data).is_err());
    write_dataset_txt(&dir.path().join("x.txt"), &data).unwrap();
    // A .gz name over plain bytes is refused with a reason.
    std::fs::write(dir.path().join("plain.txt.gz"), "0101\n").unwrap();
    let err = read_dataset(&dir.path().join("plain.txt.gz"), None).unwrap_err();
    assert!(err.to_string().contains("gzip"), "{err}");
    // Only the written files remain (no temporaries).
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        names.len() + 2
    );
}

/// The 30 bars-and-stripes patterns, built here independently of the Python script.
#[test]
fn bundled_bars_and_stripes_holds_exactly_the_30_patterns() {
    use std::collections::BTreeSet;
    let data = ebm::io::datasets::read_dataset(
        &crate::common::project_root().join("data/bars_stripes_4x4.txt"),
        None,
    )
    .unwrap();
    assert_eq!((data.rows(), data.cols()), (30, 16));
    let mut expected = BTreeSet::new();
    for mask in 0u32..16 {
        // Stripes: row r on when bit r is set; bars: column c on when bit c is set.
        let stripes: Vec<u8> = (0..16).map(|k| (mask >> (k / 4) & 1) as u8).collect();
        let bars: Vec<u8> = (0..16).map(|k| (mask >> (k % 4) & 1) as u8).collect();
        expected.insert(stripes);
        expected.insert(bars);
    }
    assert_eq!(expected.len(), 30);
    let found: BTreeSet<Vec<u8>> = data.iter_rows().map(<[u8]>::to_vec).collect();
    assert_eq!(found, expected);
}

#[test]
fn bundled_digits_and_images_have_their_documented_sizes() {
    let root = crate::common::project_root().join("data");
    let train = ebm::io::datasets::read_dataset(&root.join("digits_train.txt"), None).unwrap();
    let test = ebm::io::datasets::read_dataset(&root.join("digits_test.txt"), None).unwrap();
    assert_eq!((train.rows(), train.cols()), (1497, 64));
    assert_eq!((test.rows(), test.cols()), (300, 64));
    for (name, w, h) in [
        ("horse.png", 400, 328),
        ("camera_256.png", 256, 256),
        ("shapes.png", 96, 96),
    ] {
        let img = ebm::io::images::read_binary_image(&root.join("images").join(name), 128).unwrap();
        assert_eq!((img.width(), img.height()), (w, h), "{name}");
    }
}

/// The worked example of docs/formats.md: Z = 19 by hand.
#[test]
fn documented_uai_example_has_z_19() {
    let text = "MARKOV\n2\n2 2\n2\n1 0\n2 0 1\n\n2\n1 3\n\n4\n2 0.5\n1.5 4\n";
    let graph = parse_uai(text).unwrap();
    let z: f64 = (0..4u8)
        .map(|k| graph.log_weight_bits(&[k & 1, k >> 1 & 1]).exp())
        .sum();
    assert!((z - 19.0).abs() < 1e-12, "{z}");
    // The Ising form keeps ln Z exactly through its constant.
    let mrf = graph.to_pairwise().unwrap();
    let z_ising: f64 = (0..4u8)
        .map(|k| (-mrf.energy(&[spin_of_bit(k & 1), spin_of_bit(k >> 1 & 1)])).exp())
        .sum();
    assert!((z_ising - 19.0).abs() < 1e-12, "{z_ising}");
}

/// A symbolic link planted where the old code put its temporary file (`.{name}.tmp-{pid}`,
/// predictable from the process id) is never written through, and neither is a link at the
/// destination itself.
#[cfg(unix)]
#[test]
fn atomic_writes_never_follow_a_planted_symlink() {
    use ebm::io::atomic::write_bytes_atomic;
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, b"precious").unwrap();
    let out = dir.path().join("out.txt");
    let planted = dir
        .path()
        .join(format!(".out.txt.tmp-{}", std::process::id()));
    std::os::unix::fs::symlink(&victim, &planted).unwrap();
    write_bytes_atomic(&out, b"result").unwrap();
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert!(std::fs::symlink_metadata(&planted).unwrap().is_symlink());
    assert_eq!(std::fs::read(&out).unwrap(), b"result");
    // A link at the destination is replaced by the new file, its target kept.
    let link = dir.path().join("link.txt");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    write_bytes_atomic(&link, b"other").unwrap();
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert!(!std::fs::symlink_metadata(&link).unwrap().is_symlink());
}

/// The temporary file of a killed writer (a process that has ended) is removed by the next
/// write of the same output; a running process's temporary, another output's, a link of the
/// pattern and unrelated files are kept.
#[cfg(target_os = "linux")]
#[test]
fn atomic_writes_remove_stale_temporaries_of_their_own_output_only() {
    use ebm::io::atomic::write_bytes_atomic;
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    assert!(!std::path::Path::new(&format!("/proc/{dead}")).exists());
    let alive = std::process::id();
    let dir = tempfile::tempdir().unwrap();
    let file = |name: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, b"x").unwrap();
        p
    };
    let stale = file(format!(".out.csv.ebm-{dead}-a1B2c3D4e5.tmp"));
    let running = file(format!(".out.csv.ebm-{alive}-a1B2c3D4e5.tmp"));
    let other_output = file(format!(".other.csv.ebm-{dead}-a1B2c3D4e5.tmp"));
    let unrelated = file(format!(".out.csv.ebm-{dead}-notours.tmp"));
    let plain = file("notes.txt".into());
    let link = dir
        .path()
        .join(format!(".out.csv.ebm-{dead}-zzzzzzzzzz.tmp"));
    std::os::unix::fs::symlink(&plain, &link).unwrap();
    write_bytes_atomic(&dir.path().join("out.csv"), b"1\n").unwrap();
    assert!(!stale.exists(), "stale temporary of an ended process kept");
    for kept in [&running, &other_output, &unrelated, &plain] {
        assert!(kept.exists(), "{} removed", kept.display());
    }
    assert!(std::fs::symlink_metadata(&link).is_ok(), "link removed");
}

/// gzip of `text` repeated `times` times.
fn gzip_of_repeated(text: &[u8], times: usize) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for _ in 0..times {
        enc.write_all(text).unwrap();
    }
    enc.finish().unwrap()
}

/// A small `.gz` that expands far beyond the cap is refused as too large after decompressing
/// no more than the cap; at or under the cap it reads.
#[test]
fn gzip_datasets_are_capped_in_decompressed_size() {
    use ebm::io::datasets::read_dataset_capped;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bomb.txt.gz");
    // 8 MiB of "0101\n" lines; compressed it is a few kB.
    let line = b"0101\n";
    let times = (8 << 20) / line.len();
    let gz = gzip_of_repeated(line, times);
    assert!(gz.len() < 100_000, "{}", gz.len());
    std::fs::write(&path, &gz).unwrap();
    let expanded = (times * line.len()) as u64;
    let err = read_dataset_capped(&path, None, expanded - 1).unwrap_err();
    assert!(matches!(err, ebm::Error::TooLarge { .. }), "{err}");
    assert!(
        err.to_string().contains(&(expanded - 1).to_string()),
        "{err}"
    );
    let data = read_dataset_capped(&path, None, expanded).unwrap();
    assert_eq!((data.rows(), data.cols()), (times, 4));
}

/// A `.npy` with bytes after its array, or with a header key numpy never writes, is refused by
/// the command line with the file's name and the problem.
#[test]
fn npy_with_trailing_bytes_or_unknown_header_keys_is_refused_naming_the_file() {
    use predicates::prelude::*;
    let dir = tempfile::tempdir().unwrap();
    let npy = |header: &str, body: &[u8]| {
        let mut header = header.to_string();
        while !(10 + header.len() + 1).is_multiple_of(64) {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(body);
        out
    };
    let good = "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 2), }";
    let cases = [
        (
            "trailing.npy",
            npy(good, &[0, 1, 1, 0, 7, 7]),
            "2 trailing bytes",
        ),
        (
            "extra_key.npy",
            npy(
                "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 2), 'strides': (2, 1)}",
                &[0, 1, 1, 0],
            ),
            "unknown key `strides`",
        ),
    ];
    for (name, bytes, problem) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        crate::common::ebm()
            .arg("info")
            .arg(&path)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(name).and(predicate::str::contains(problem)));
    }
    std::fs::write(dir.path().join("good.npy"), npy(good, &[0, 1, 1, 0])).unwrap();
    crate::common::ebm()
        .arg("info")
        .arg(dir.path().join("good.npy"))
        .assert()
        .success();
}

/// Model files are opened by content: a UAI model named `.txt` and an RBM without an extension
/// load as what they are, through the library and through info, partition and sample; a file
/// that is neither is refused saying what was expected.
#[test]
fn models_open_by_content_whatever_their_name() {
    use ebm::io::safetensors::{RbmFile, write_rbm};
    use ebm::io::{LoadedModel, open_model};
    use ebm::model::Rbm;
    use predicates::prelude::*;
    let dir = tempfile::tempdir().unwrap();
    let uai_txt = dir.path().join("model.txt");
    // x0 and x1 with a pairwise table; Z = 1 + 2 + 3 + 4 = 10.
    std::fs::write(&uai_txt, "MARKOV\n2\n2 2\n1\n2 0 1\n4\n1 2 3 4\n").unwrap();
    let rbm_bare = dir.path().join("rbm_model");
    let rbm = Rbm::new(2, 1, vec![0.5, -0.25], vec![0.1, 0.2], vec![-0.3]).unwrap();
    write_rbm(&rbm_bare, &RbmFile::new(rbm.clone())).unwrap();
    let garbage = dir.path().join("garbage.uai");
    std::fs::write(&garbage, "this is not a model\n").unwrap();

    match open_model(&uai_txt).unwrap() {
        LoadedModel::Factors(g) => assert_eq!((g.num_vars(), g.factors().len()), (2, 1)),
        other => panic!("{other:?}"),
    }
    match open_model(&rbm_bare).unwrap() {
        LoadedModel::Rbm(file) => assert_eq!(file.rbm, rbm),
        other => panic!("{other:?}"),
    }
    let err = open_model(&garbage).unwrap_err().to_string();
    assert!(
        err.contains("MARKOV") && err.contains("safetensors"),
        "{err}"
    );

    let json = |args: &[&std::ffi::OsStr]| -> serde_json::Value {
        let out = crate::common::ebm()
            .args(args)
            .arg("--json")
            .assert()
            .success();
        serde_json::from_slice(&out.get_output().stdout).unwrap()
    };
    let (info, part, sample) = ("info".as_ref(), "partition".as_ref(), "sample".as_ref());
    let model = "--model".as_ref();
    assert_eq!(json(&[info, uai_txt.as_os_str()])["kind"], "uai");
    assert_eq!(json(&[info, rbm_bare.as_os_str()])["kind"], "rbm");
    let log_z = json(&[part, model, uai_txt.as_os_str()])["log_z"]
        .as_f64()
        .unwrap();
    assert!((log_z - 10f64.ln()).abs() < 1e-12, "{log_z}");
    // ln Z of the RBM by enumerating its 8 states, computed here independently.
    let mut z = 0.0;
    for s in 0..8u32 {
        let (v0, v1, h) = ((s & 1) as f64, ((s >> 1) & 1) as f64, (s >> 2) as f64);
        z += (0.5 * v0 * h - 0.25 * v1 * h + 0.1 * v0 + 0.2 * v1 - 0.3 * h).exp();
    }
    let log_z = json(&[part, model, rbm_bare.as_os_str()])["log_z"]
        .as_f64()
        .unwrap();
    assert!((log_z - z.ln()).abs() < 1e-12, "{log_z} vs {}", z.ln());
    let s = json(&[
        sample,
        model,
        uai_txt.as_os_str(),
        "--sweeps".as_ref(),
        "100".as_ref(),
    ]);
    assert_eq!(s["variables"], 2);
    let s = json(&[
        sample,
        model,
        rbm_bare.as_os_str(),
        "--chains".as_ref(),
        "3".as_ref(),
    ]);
    assert_eq!(s["n_visible"], 2);
    for cmd in [info, part] {
        let mut c = crate::common::ebm();
        c.arg(cmd);
        if cmd == part {
            c.arg("--model");
        }
        c.arg(&garbage).assert().code(2).stderr(
            predicate::str::contains("garbage.uai").and(predicate::str::contains("MARKOV")),
        );
    }
}
