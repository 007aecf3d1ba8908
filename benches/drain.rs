//! Queue drain with 1 and more watchers on one PostgreSQL job store (docs/benchmarks.md, "Scale
//! out"): a burst of uploads lands in a local registry directory, N `fstgate watch` processes
//! (one job at a time each, their own state directories, as on N machines) drain it, and the
//! time from the burst to the last final job is taken from the store. A small model (the fc
//! fixture on 8x8 toy images) so it fits the CPU; `--epochs` and `--images` set how much of each
//! job is computation rather than fixed cost (worker start, loading, signing, publication). Each
//! watcher stands for a machine: its workers get `OMP_NUM_THREADS` = CPUs / watchers.
//!
//!   cargo bench --bench drain -- [--uploads 24] [--epochs 1] [--images 64] [--workers 1,3]
//!
//! Needs Debian's postgresql (as `./dev test` installs it). Every number printed is measured
//! in this run.
#[path = "../tests/common/mod.rs"]
mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::Spawned;
use common::pipeline::Setup;
use common::postgres::{PASSWORD_ENV, PostgresServer};

struct Options {
    uploads: usize,
    epochs: usize,
    /// Toy images each job tunes and evaluates on.
    images: usize,
    workers: Vec<usize>,
}

fn options() -> Options {
    let mut options = Options { uploads: 24, epochs: 1, images: 64, workers: vec![1, 3] };
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    for pair in args.chunks(2) {
        let value = pair.get(1).unwrap_or_else(|| panic!("{} needs a value", pair[0]));
        match pair[0].as_str() {
            "--uploads" => options.uploads = value.parse().expect("--uploads N"),
            "--epochs" => options.epochs = value.parse().expect("--epochs N"),
            "--images" => options.images = value.parse().expect("--images N"),
            "--workers" => options.workers = value.split(',').map(|w| w.parse().expect("--workers 1,3")).collect(),
            other => panic!("unknown option {other} (--uploads, --epochs, --images, --workers)"),
        }
    }
    options
}

/// Seconds from the burst to the last final job, with `workers` watchers on a fresh database,
/// sharing this machine's `cpus`.
fn drain(pg: &PostgresServer, options: &Options, workers: usize, cpus: usize) -> f64 {
    let name = format!("drain_{workers}_{}_{}", options.epochs, options.images);
    let setup = Setup::new(&name, options.epochs, 30.0);
    common::toy_data(&setup.dir.join("toy.safetensors"), options.images, 1, 10);
    let url = pg.database(&name, "fstgate");
    setup.add_table(&format!("[job_store]\nurl = \"{url}\"\npassword = \"env:{PASSWORD_ENV}\""));
    // One job at a time per watcher, each with its own state directory.
    let config = std::fs::read_to_string(setup.config()).unwrap().replace("concurrency = 2", "concurrency = 1");
    let watchers: Vec<Spawned> = (0..workers)
        .map(|w| {
            let path = setup.dir.join(format!("watcher-{w}.toml"));
            std::fs::write(&path, config.replace("state_dir = \"state\"", &format!("state_dir = \"state-{w}\"")))
                .unwrap();
            let mut watch = setup.command_with(&path, &["watch"]);
            // Each watcher stands for a machine of its own: a fair share of this one's cores.
            watch.env(PASSWORD_ENV, &pg.password).env("OMP_NUM_THREADS", (cpus / workers).max(1).to_string());
            watch
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(setup.dir.join(format!("watch-{w}.log"))).unwrap());
            Spawned::start(watch)
        })
        .collect();
    // Let every watcher open the store and poll once before the burst.
    std::thread::sleep(Duration::from_secs(3));
    let started = Instant::now();
    for version in 1..=options.uploads {
        setup.upload(&format!("toy-fc/{version}"), true);
    }
    loop {
        let done: usize = pg
            .sql(&name, "SELECT count(*) FROM jobs WHERE state IN ('released', 'denied', 'failed')")
            .trim()
            .parse()
            .unwrap();
        if done == options.uploads {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(3600), "not drained within an hour");
        std::thread::sleep(Duration::from_millis(200));
    }
    let seconds = started.elapsed().as_secs_f64();
    drop(watchers);
    setup.assert_published_once(options.uploads, 1);
    seconds
}

fn main() {
    let options = options();
    let Some(pg) = PostgresServer::start() else { return };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "queue drain: {} uploads of the fc fixture, {} epoch(s) on {} images each, one PostgreSQL store, {cpus} CPUs",
        options.uploads, options.epochs, options.images
    );
    println!("| watchers | drain s | jobs/min | speed-up |");
    println!("|---|---|---|---|");
    let mut first = None;
    for &workers in &options.workers {
        let seconds = drain(&pg, &options, workers, cpus);
        let base = *first.get_or_insert(seconds);
        println!(
            "| {workers} | {seconds:.1} | {:.1} | {:.2}x |",
            60.0 * options.uploads as f64 / seconds,
            base / seconds
        );
    }
}
