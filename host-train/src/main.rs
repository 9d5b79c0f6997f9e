fn main() -> anyhow::Result<()> {
    host_train::keep_freed_memory();
    host_train::cli::main()
}
