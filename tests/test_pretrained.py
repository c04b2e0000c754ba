"""Offline pretrained weights: EfficientNet-Lite0 (ImageNet) and MiniLM load, fit, and behave like trained models."""
import pytest
import torch
import torch.nn.functional as F

from fgr_core import backbones as bb


def test_lite0_every_entry_loaded_in_order():
    "All 296 tensors of the package's state dict land, unchanged, in timm's efficientnet_lite0 (same order)"
    import timm
    src = torch.load(bb._lite0_weights_file(), map_location="cpu", weights_only=True)
    model = bb.load_efficientnet_lite0_imagenet(timm.create_model("efficientnet_lite0"))
    dst = model.state_dict()
    assert len(src) == len(dst) == 296
    for (ks, vs), (kd, vd) in zip(src.items(), dst.items()):
        assert vs.shape == vd.shape, (ks, kd)
        assert torch.equal(vs.to(vd.dtype), vd), (ks, kd)


def test_missing_weights_error_says_how(monkeypatch):
    "When timm cannot fetch weights (no network), the error names checkpoint_path"
    import timm

    def _offline(*a, pretrained=False, **k):
        if pretrained: raise OSError("no network")
        return timm.models.create_model("resnet18")

    monkeypatch.setattr(timm, "create_model", _offline)
    with pytest.raises(RuntimeError, match="checkpoint_path="):
        bb.create_image_backbone("resnet50", pretrained=True)


@pytest.mark.slow
def test_lite0_classifies_sample_images_with_standard_preprocessing():
    "Resize 256 (bicubic) + centre crop 224, as in ImageNet evaluation: the temple is a building, the flower a flower"
    from PIL import Image
    from sklearn.datasets import load_sample_images
    import torchvision.transforms as T
    tf = T.Compose([T.Resize(256, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(224), T.ToTensor(),
                    T.Normalize(bb.IMAGENET_MEAN, bb.IMAGENET_STD)])
    x = torch.stack([tf(Image.fromarray(a)) for a in load_sample_images().images])
    names = bb.imagenet_class_names()
    with torch.no_grad(): top5 = [[names[i] for i in row] for row in bb.imagenet_classifier()(x).topk(5, 1).indices.tolist()]
    assert top5[0][0] in {"palace", "church", "monastery", "bell cote", "castle", "stupa"}, top5[0]
    assert "daisy" in top5[1], top5[1]
    # the backbone path gives the same features as the classifier's trunk
    net = bb.create_image_backbone("efficientnet_lite0", pretrained=True).eval()
    with torch.no_grad():
        g, r = net(x)
        logits = net.model.classifier(g)
    assert torch.allclose(logits.softmax(-1), bb.imagenet_soft_labels(x, normalized=True), atol=1e-5)


@pytest.mark.slow
def test_minilm_offline_sentence_embeddings():
    "MiniLM loads without network; its masked-mean embeddings rank a paraphrase above an unrelated sentence"
    enc = bb.create_text_encoder("all_minilm_l6_v2", normalize=True).eval()
    with torch.no_grad():
        s, tok, mask = enc(["A man is playing a guitar.", "Someone plays the guitar.", "The stock market fell sharply today."])
    assert s.shape == (3, 384) and tok.shape[-1] == 384 and mask.dtype == torch.bool
    assert torch.allclose(s.norm(dim=1), torch.ones(3), atol=1e-5)
    sim = s @ s.T
    assert sim[0, 1] > 0.6 and sim[0, 2] < 0.3, sim
    assert torch.allclose(s, F.normalize(bb.masked_mean(tok, mask), dim=-1), atol=1e-6)
