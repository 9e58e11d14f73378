"""AdvEnt (Vu et al., CVPR 2019), in the few-shot setting like the AdaptSegNet-style
baseline: joint training plus an image-level discriminator on G's weighted self-information
maps (:func:`pixda_core.losses.self_information`) instead of its softmax output; G is asked
to make the target's maps look like the source's (weight ``method.lambda_adv_image``, AdvEnt's
0.001 too). Written only through the public method API, as a plug-in would be."""

from __future__ import annotations

from .. import losses as L
from ..models import FCDiscriminator
from .base import ADV, SEG_SRC, SEG_TRG, Method, domain_discriminator_loss


class AdvEnt(Method):
    name = "advent"
    title = "AdvEnt"
    source = True
    target = True
    losses = (SEG_SRC, SEG_TRG, ADV, "loss_d")
    options = ("method.fda", "method.fda_beta", "method.lambda_adv_image")

    def networks(self, num_classes):
        return {"d": FCDiscriminator(num_classes)}

    def target_loss(self, step, logits, labels):
        maps = L.self_information(logits.softmax(1))
        adv = L.domain_bce(step.judge_for_g("d", maps), L.SOURCE)
        step.record(ADV, adv)
        return self.cfg.method.lambda_adv_image * adv

    def network_loss(self, step, name, pred_src, pred_trg):
        src = L.self_information(pred_src.softmax(1))
        trg = L.self_information(pred_trg.softmax(1))
        return domain_discriminator_loss(step, name, src, trg)
