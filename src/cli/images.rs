//! `orch images import|ls|pull|rm`: the node's image store (`<data-dir>/agent/store`) from the command line,
//! for airgapped nodes and for debugging pulls (same code path and error wording as the agent's pulls).

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

use crate::agent::image::registries::Registries;
use crate::agent::image::{Credentials, ImageService, Progress};

#[derive(Args, Debug, Clone)]
pub struct ImagesArgs {
    #[arg(
        long,
        env = "ORCH_DATA_DIR",
        default_value = "/var/lib/orch",
        global = true
    )]
    pub data_dir: PathBuf,
    /// k3s-format registries.yaml (mirrors, auth, TLS); a missing file means none.
    #[arg(
        long,
        env = "ORCH_PRIVATE_REGISTRY",
        default_value = "/etc/orch/registries.yaml",
        global = true
    )]
    pub private_registry: PathBuf,
    #[command(subcommand)]
    pub command: ImagesCommand,
}

#[derive(Subcommand, Debug, Clone)]
pub enum ImagesCommand {
    /// Import image tarballs (OCI layout or docker-archive; plain, .gz or .zst).
    Import {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// List the images on this node.
    #[command(alias = "list")]
    Ls,
    /// Pull an image from its registry (or the mirrors in registries.yaml).
    Pull {
        image: String,
        /// Registry credentials as user:password.
        #[arg(long)]
        creds: Option<String>,
    },
    /// Remove images by reference or id; content no other image needs is deleted.
    #[command(alias = "rmi")]
    Rm {
        #[arg(required = true)]
        images: Vec<String>,
    },
}

pub fn run(args: ImagesArgs) -> anyhow::Result<()> {
    let registries = Registries::load(&args.private_registry)?;
    let root = args.data_dir.join("agent/store");
    let service = ImageService::open(&root, registries)
        .with_context(|| format!("opening the image store {}", root.display()))?;
    match args.command {
        ImagesCommand::Import { files } => {
            for file in files {
                let images = service
                    .import(&file)
                    .with_context(|| format!("importing {}", file.display()))?;
                for image in images {
                    println!("imported {} ({})", image.reference, short_id(&image.id));
                }
            }
            Ok(())
        }
        ImagesCommand::Ls => {
            let mut images = service.list()?;
            images.sort_by(|a, b| a.reference.cmp(&b.reference));
            let rows: Vec<[String; 3]> = images
                .iter()
                .map(|i| {
                    [
                        i.reference.clone(),
                        short_id(&i.id).to_string(),
                        human_size(i.size),
                    ]
                })
                .collect();
            print!("{}", table(["IMAGE", "ID", "SIZE"], &rows));
            Ok(())
        }
        ImagesCommand::Pull { image, creds } => pull(&service, &image, creds.as_deref()),
        ImagesCommand::Rm { images } => {
            let mut failed = false;
            for image in images {
                match service.remove(&image) {
                    Ok(removed) => {
                        for r in removed.references {
                            println!("deleted {r}");
                        }
                    }
                    Err(e) => {
                        eprintln!("error: {e}");
                        failed = true;
                    }
                }
            }
            if failed {
                bail!("some images were not removed");
            }
            Ok(())
        }
    }
}

fn pull(service: &ImageService, image: &str, creds: Option<&str>) -> anyhow::Result<()> {
    let reference = crate::agent::image::reference::Reference::parse(image)?;
    let credentials = match creds {
        Some(c) => {
            let (user, pass) = c.split_once(':').context("--creds must be user:password")?;
            Credentials::basic(reference.domain(), user, pass)
        }
        None => Credentials::default(),
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg:12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    bar.set_message("resolving");
    let on_progress = |p: Progress| match p {
        Progress::Resolved {
            total_bytes,
            cached_bytes,
            ..
        } => {
            bar.set_length(total_bytes);
            bar.set_position(cached_bytes);
            bar.set_message("downloading");
        }
        Progress::Downloaded { done_bytes, .. } => bar.set_position(done_bytes),
        Progress::Unpacking { layer, layers } => {
            bar.set_message(format!("unpacking {layer}/{layers}"))
        }
    };
    let result = runtime.block_on(service.pull(image, &credentials, &on_progress));
    bar.finish_and_clear();
    let pulled = result?;
    println!(
        "pulled {} ({}, {})",
        pulled.reference,
        short_id(&pulled.id),
        human_size(pulled.size)
    );
    Ok(())
}

/// The first 12 hex digits of an id, as `docker images` shows it.
fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}

/// Decimal units with three significant digits, as docker prints image sizes.
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    let text = format!(
        "{value:.*}",
        if value >= 100.0 {
            0
        } else if value >= 10.0 {
            1
        } else {
            2
        }
    );
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    };
    format!("{text}{}", UNITS[unit])
}

fn table<const N: usize>(headers: [&str; N], rows: &[[String; N]]) -> String {
    let mut widths = headers.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == N {
                l.push_str(cell);
            } else {
                l.push_str(&format!("{cell:<width$}   ", width = widths[i]));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_docker() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1_000), "1kB");
        assert_eq!(human_size(1_234_567), "1.23MB");
        assert_eq!(human_size(12_345_678), "12.3MB");
        assert_eq!(human_size(123_456_789), "123MB");
    }

    #[test]
    fn table_aligns_columns() {
        let rows = [[
            "docker.io/library/busybox:latest".to_string(),
            "abc".into(),
            "1MB".into(),
        ]];
        assert_eq!(
            table(["IMAGE", "ID", "SIZE"], &rows),
            "IMAGE                              ID    SIZE\n\
             docker.io/library/busybox:latest   abc   1MB\n"
        );
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789ab");
    }
}
