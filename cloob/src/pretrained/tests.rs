use super::pickle_scan::check_pickle;
use super::*;
use crate::model::ClipConfig;
use hopfield::io::encode_safetensors;
use hopfield::Cpu;

// `pickle.dumps(OrderedDict(a=1), protocol=P)` for P = 0, 2, 4.
const ODICT_P0: &[u8] = b"ccollections\nOrderedDict\np0\n(tRp1\nVa\np2\nI1\ns.";
const ODICT_P2: &[u8] = b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01X\x01\x00\x00\x00aq\x02K\x01s.";
const ODICT_P4: &[u8] =
    b"\x80\x04\x95\x29\x00\x00\x00\x00\x00\x00\x00\x8c\x0bcollections\x94\x8c\x0bOrderedDict\x94\x93\x94)R\x94\x8c\x01a\x94K\x01s.";
// An object whose `__reduce__` returns (os.system, ("echo hi",)), protocol 2; (builtins.eval, ("1+1",)), 4.
const SYSTEM_P2: &[u8] = b"\x80\x02cposix\nsystem\nq\x00X\x07\x00\x00\x00echo hiq\x01\x85q\x02Rq\x03.";
const EVAL_P4: &[u8] =
    b"\x80\x04\x95\x1f\x00\x00\x00\x00\x00\x00\x00\x8c\x08builtins\x94\x8c\x04eval\x94\x93\x94\x8c\x031+1\x94\x85\x94R\x94.";

#[test]
fn the_pickles_of_a_state_dict_pass() {
    for p in [ODICT_P0, ODICT_P2, ODICT_P4] {
        check_pickle(p).unwrap();
    }
    // Module and name memoised, then read back for a STACK_GLOBAL.
    check_pickle(b"\x80\x04\x8c\x0bcollections\x94\x8c\x0bOrderedDict\x94002h\x00h\x01\x93)R.").unwrap();
}

#[test]
fn a_pickle_naming_another_global_is_refused() {
    let e = check_pickle(SYSTEM_P2).unwrap_err();
    assert!(e.contains("posix.system"), "{e}");
    let e = check_pickle(EVAL_P4).unwrap_err();
    assert!(e.contains("builtins.eval"), "{e}");
    // The same, its strings read back from the memo.
    let e = check_pickle(b"\x80\x04\x8c\x08builtins\x94\x8c\x04eval\x9400h\x00h\x01\x93.").unwrap_err();
    assert!(e.contains("builtins.eval"), "{e}");
    // A STACK_GLOBAL whose operands are not pushed right before it cannot be checked.
    let e = check_pickle(b"\x80\x04\x8c\x08builtins\x8c\x04evalK\x010\x93.").unwrap_err();
    assert!(e.contains("cannot check"), "{e}");
    assert!(check_pickle(b"\x80\x02ccollections\nOrderedDict\n").unwrap_err().contains("truncated"));
    assert!(check_pickle(b"\x80\x02\xff.").unwrap_err().contains("opcode 0xff"));
    assert!(check_pickle(b"\x80\x02\x82\x01.").unwrap_err().contains("extension registry"));
}

#[test]
fn safetensors_weights_load_by_name_and_mismatches_are_one_error() {
    let cpu = Cpu::<f64>::new();
    let cfg = ClipConfig::tiny();
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(7);
    let model = cfg.init(&cpu, &mut rng).unwrap();
    let dir = std::env::temp_dir().join(format!("cloob-pretrained-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("w.safetensors");
    let mut named = named_tensors(&model);
    std::fs::write(&path, encode_safetensors(&cpu, &named).unwrap()).unwrap();
    let (loaded, report) = load_pretrained(&cpu, &path, &cfg, false).unwrap();
    assert!(report.is_complete() && report.loaded == named.len());
    assert_eq!(cpu.to_vec(&loaded.text.text_projection), cpu.to_vec(&model.text.text_projection));
    assert_eq!(loaded.inv_tau(&cpu), model.inv_tau(&cpu));

    // One tensor renamed under DDP's prefix is still found; one dropped is missing.
    named[0].0 = format!("module.{}", named[0].0);
    let dropped = named.pop().unwrap().0;
    std::fs::write(&path, encode_safetensors(&cpu, &named).unwrap()).unwrap();
    let e = load_pretrained(&cpu, &path, &cfg, false).unwrap_err().to_string();
    assert!(e.contains("1 missing") && e.contains(&dropped) && e.contains("--pretrained-partial"), "{e}");
    let (_, report) = load_pretrained(&cpu, &path, &cfg, true).unwrap();
    assert_eq!((report.missing.clone(), report.loaded), (vec![dropped], named.len()));

    // Truncated: the header promises more bytes than the file holds.
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
    let e = load_pretrained(&cpu, &path, &cfg, true).unwrap_err().to_string();
    assert!(e.contains("truncated"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}
