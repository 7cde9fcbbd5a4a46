use super::*;

/// The vision transformer of a ViT model's config.
fn vit(c: &ClipConfig) -> &VisionConfig {
    match &c.vision {
        ImageTowerConfig::Vit(v) => v,
        ImageTowerConfig::ResNet(_) => panic!("a ViT config was expected"),
    }
}

#[test]
fn our_presets_as_json_are_the_presets_in_code() {
    assert_eq!(named_clip_config("tiny").unwrap(), ClipConfig::tiny());
    assert_eq!(named_clip_config("small").unwrap(), ClipConfig::small());
    assert_eq!(named_clip_config("vit-b32").unwrap(), ClipConfig::vit_b32());
    assert_eq!(named_clip_config("ViT-B-32-quickgelu").unwrap(), ClipConfig::vit_b32());
    assert_eq!(named_clip_config("rn-tiny").unwrap(), ClipConfig::rn_tiny());
    assert_eq!(named_clip_config("RN50-quickgelu").unwrap(), ClipConfig::rn50());
    assert_eq!(named_clip_config("RN101-quickgelu").unwrap(), ClipConfig::rn101());
}

#[test]
fn resnet_configs_give_open_clips_modified_resnet() {
    let rn50 = named_clip_config("RN50").unwrap();
    let ImageTowerConfig::ResNet(r) = &rn50.vision else { panic!("RN50 is a ResNet") };
    assert_eq!((r.layers, r.width, r.heads, r.output_dim, r.image_size), ([3, 4, 6, 3], 64, 32, 1024, 224));
    assert_eq!(rn50.text.activation, "gelu");
    let err = OpenClipConfig::from_json(
        r#"{"embed_dim": 64, "vision_cfg": {"layers": [1, 1, 1], "width": 8}, "text_cfg": {}}"#,
        "three stages",
    )
    .unwrap()
    .to_clip_config()
    .unwrap_err();
    assert!(err.to_string().contains("4 stages"), "{err}");
}

#[test]
fn open_clip_configs_give_their_architectures() {
    let b32 = named_clip_config("ViT-B-32").unwrap();
    assert_eq!((vit(&b32).activation.as_str(), b32.text.activation.as_str()), ("gelu", "gelu"));
    assert_eq!(
        ClipConfig {
            vision: VisionConfig { activation: "quick_gelu".into(), ..vit(&b32).clone() }.into(),
            ..b32.clone()
        }
        .vision,
        ClipConfig::vit_b32().vision
    );
    let l14 = named_clip_config("ViT-L-14-quickgelu").unwrap();
    assert_eq!(
        (l14.embed_dim, vit(&l14).width, vit(&l14).heads, vit(&l14).layers, vit(&l14).patch_size),
        (768, 1024, 16, 24, 14)
    );
    assert_eq!((l14.text.width, l14.text.heads, l14.text.context_length), (768, 12, 77));
    assert_eq!(vit(&l14).activation, "quick_gelu");
    let b16 = named_clip_config("ViT-B-16").unwrap();
    assert_eq!((vit(&b16).patch_size, vit(&b16).grid()), (16, 14));
}

#[test]
fn resnet_configs_parse_as_stage_depths_and_build_resnet_towers() {
    for name in ["RN50", "RN50-quickgelu", "RN101", "RN101-quickgelu"] {
        let cfg = OpenClipConfig::named(name).unwrap();
        assert!(matches!(cfg.vision_cfg.layers, VisionLayers::Stages(ref s) if s.len() == 4), "{name}");
        assert_eq!(cfg.vision_cfg.patch_size, None);
        let clip = cfg.to_clip_config().unwrap();
        assert!(matches!(clip.vision, ImageTowerConfig::ResNet(_)), "{name}");
    }
}

#[test]
fn unknown_names_list_the_known_ones() {
    let e = named_clip_config("ViT-H-14").unwrap_err().to_string();
    assert!(e.contains("ViT-H-14") && e.contains("ViT-L-14-quickgelu") && e.contains("--model-config"), "{e}");
}

fn with(vision: &str, text: &str, top: &str) -> Result<ClipConfig> {
    let json = format!(
        r#"{{"embed_dim": 64, {top} "vision_cfg": {{"image_size": 32, "layers": 2, "width": 64, "head_width": 16,
        "patch_size": 8 {vision}}}, "text_cfg": {{"context_length": 32, "width": 64, "heads": 4, "layers": 2 {text}}}}}"#
    );
    OpenClipConfig::from_json(&json, "test.json")?.to_clip_config()
}

#[test]
fn keys_that_change_the_architecture_are_errors_naming_them() {
    let base = with("", "", "").unwrap();
    assert_eq!(vit(&base).activation, "gelu");
    for (v, t, top, needle) in [
        (r#", "ls_init_value": 0.1"#, "", "", "vision_cfg.ls_init_value = 0.1"),
        (r#", "attentional_pool": true"#, "", "", "vision_cfg.attentional_pool"),
        (r#", "timm_model_name": "vit_base""#, "", "", "vision_cfg.timm_model_name"),
        (r#", "patch_dropout": 0.5"#, "", "", "vision_cfg.patch_dropout"),
        ("", r#", "hf_model_name": "roberta-base""#, "", "text_cfg.hf_model_name"),
        ("", r#", "proj_bias": true"#, "", "text_cfg.proj_bias"),
        ("", r#", "pool_type": "last""#, "", "text_cfg.pool_type"),
        ("", r#", "norm_kwargs": {"elementwise_affine": false}"#, "", "text_cfg.norm_kwargs.elementwise_affine"),
        ("", "", r#""init_logit_bias": -10,"#, "init_logit_bias"),
        ("", "", r#""multimodal_cfg": {"width": 512},"#, "multimodal_cfg"),
        (r#", "widht": 32"#, "", "", "unknown key vision_cfg.widht"),
        ("", "", r#""embed_dimm": 3,"#, "unknown key embed_dimm"),
    ] {
        let e = with(v, t, top).unwrap_err().to_string();
        assert!(e.contains(needle), "{needle}: {e}");
    }
    let rect = r#"{"embed_dim": 64, "vision_cfg": {"image_size": [32, 64], "layers": 2, "width": 64,
        "head_width": 16, "patch_size": 8}, "text_cfg": {"width": 64, "heads": 4, "layers": 2}}"#;
    let e = OpenClipConfig::from_json(rect, "rect").unwrap().to_clip_config().unwrap_err().to_string();
    assert!(e.contains("vision_cfg.image_size [32, 64]: only square images"), "{e}");
}

#[test]
fn keys_that_do_not_change_the_architecture_are_accepted() {
    let cfg = with(
        r#", "output_tokens": true, "patch_dropout": 0.0, "norm_kwargs": {"eps": 1e-6}, "timm_pool": "avg""#,
        r#", "pad_id": 0, "act_kwargs": {}, "proj_type": "linear""#,
        r#""quick_gelu": true, "cast_dtype": "fp16", "init_logit_scale": 2.3, "custom_text": false,"#,
    )
    .unwrap();
    assert_eq!((vit(&cfg).layer_norm_eps, cfg.text.layer_norm_eps), (1e-6, 1e-5));
    assert_eq!(cfg.text.activation, "quick_gelu");
    assert_eq!(vit(&cfg).heads, 4);
}

#[test]
fn configs_round_trip_through_open_clip_json() {
    for name in ["tiny", "small", "vit-b32", "ViT-B-32", "ViT-L-14", "ViT-B-16-quickgelu", "rn-tiny", "RN50", "RN101"] {
        let cfg = named_clip_config(name).unwrap();
        let json = serde_json::to_string(&OpenClipConfig::from_clip_config(&cfg).unwrap()).unwrap();
        assert_eq!(OpenClipConfig::from_json(&json, name).unwrap().to_clip_config().unwrap(), cfg, "{name}");
    }
    let eps = ClipConfig { text: TextConfig { layer_norm_eps: 1e-6, ..TextConfig::tiny() }, ..ClipConfig::tiny() };
    let json = serde_json::to_string(&OpenClipConfig::from_clip_config(&eps).unwrap()).unwrap();
    assert!(json.contains("norm_kwargs"), "{json}");
    assert_eq!(OpenClipConfig::from_json(&json, "eps").unwrap().to_clip_config().unwrap(), eps);
    let mixed =
        ClipConfig { text: TextConfig { activation: "gelu".into(), ..TextConfig::tiny() }, ..ClipConfig::tiny() };
    assert!(OpenClipConfig::from_clip_config(&mixed).is_err());
}
