fn main() -> anyhow::Result<()> {
    host_train::cli::main()
}
