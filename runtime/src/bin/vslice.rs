use clap::Parser;

fn main() {
    let cli = vslice::cli::Cli::parse();
    std::process::exit(vslice::cli::run(cli));
}
