fn main() -> anyhow::Result<()> {
    orch::cli::main()
}
