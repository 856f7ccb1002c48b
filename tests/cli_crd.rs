//! A custom kind through the real `corral` binary: apply its definition, then objects
//! of the kind, and read them back with `get` and `explain`.

mod cli_support;

use cli_support::Env;

const WIDGET: &str = "apiVersion: example.com/v1
kind: Widget
metadata:
  name: big
spec:
  size: 40
  colour: blue
";

#[test]
fn apply_definition_then_objects_get_and_explain_them() {
    let env = Env::start();
    let crd = concat!(env!("CARGO_MANIFEST_DIR"), "/manifests/crd-example.yaml");
    assert_eq!(env.ok(&["apply", "-f", crd]), "customresourcedefinition/widgets.example.com created\n");

    let resources = env.ok(&["api-resources"]);
    assert!(
        resources.lines().any(|l| l.contains("widgets") && l.contains("wd") && l.contains("Widget")),
        "{resources}"
    );

    let path = env.write("big.yaml", WIDGET);
    let path = path.to_str().unwrap();
    assert_eq!(env.ok(&["apply", "-f", path]), "widget/big created\n");
    assert_eq!(env.ok(&["apply", "-f", path]), "widget/big unchanged\n");

    let table = env.ok(&["get", "wd"]);
    assert!(table.lines().any(|l| l.starts_with("big")), "{table}");
    let obj: serde_json::Value = serde_json::from_str(&env.ok(&["get", "widgets", "big", "-o", "json"])).unwrap();
    assert_eq!(obj["spec"]["size"], 40);

    let explained = env.ok(&["explain", "widget.spec.size"]);
    assert!(explained.contains("centimetres"), "{explained}");

    // The schema is enforced on apply, naming the file and the field.
    let bad = env.write("bad.yaml", &WIDGET.replace("colour: blue", "colour: purple"));
    let run = env.run(&["apply", "-f", bad.to_str().unwrap()]);
    assert_ne!(run.code(), 0);
    assert!(run.stderr().contains("spec.colour"), "{}", run.stderr());

    // Deleting the definition deletes its objects and the kind.
    env.ok(&["delete", "-f", crd]);
    let run = env.run(&["get", "widgets"]);
    assert_ne!(run.code(), 0, "{}", run.stdout());
}
