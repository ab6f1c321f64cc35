fn main() {
    std::process::exit(autorun::main(std::env::args_os().collect()));
}
