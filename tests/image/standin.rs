// A tiny static program standing in for the operator in `make image-test`, so the test checks the
// image packing (image/pack.sh) without the musl release build of the whole operator.
fn main() {
    if std::env::args().nth(1).as_deref() == Some("--version") {
        println!("cvs-operator stand-in");
    }
}
