"""The fast CPU inference path gives the default kernels' logits."""







import torch
from helpers import tiny_config

from modeling_q2l import Query2LabelForMultiLabelClassification


def test_fast_cpu_inference_gives_the_default_kernels_logits():
    from unittest import mock

    torch.manual_seed(0)
    model = Query2LabelForMultiLabelClassification(tiny_config(num_labels=12)).eval()
    plain = Query2LabelForMultiLabelClassification(tiny_config(num_labels=12, fast_cpu_inference=False)).eval()
    plain.load_state_dict(model.state_dict())
    assert model.model.backbone.channels_last_input and not plain.model.backbone.channels_last_input
    pixels = torch.randn(3, 3, 64, 64)
    from modeling_q2l.model import modeling_query2label

    with mock.patch.object(modeling_query2label, "_ONEDNN_LINEAR", wraps=modeling_query2label._ONEDNN_LINEAR) as onednn:
        with torch.inference_mode():
            fast_logits = model(pixel_values=pixels).logits
        calls_in_inference = onednn.call_count
        plain_logits = plain(pixel_values=pixels).logits.detach()
        model(pixel_values=pixels).logits.sum().backward()  # with gradients: PyTorch's own kernels
        assert onednn.call_count == calls_in_inference
    assert calls_in_inference == 3 * 4 + 3 * 2  # q, k, v, o of 1 encoder + 2 decoder cross-attentions; 3 feed-forwards
    torch.testing.assert_close(fast_logits, plain_logits, atol=1e-5, rtol=1e-5)

