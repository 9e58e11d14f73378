"""AdaptSegNet-style (Tsai et al., CVPR 2018), in the few-shot setting: joint training plus
an image-level discriminator D2 on G's softmax output, G asked to fool it on the target
batch (weight ``method.lambda_adv_image``); one output level (the kit's G has one head)."""

from __future__ import annotations

from .. import losses as L
from ..models import FCDiscriminator
from .base import ADV, D2, SEG_SRC, SEG_TRG, Method, domain_discriminator_loss


class AdaptSegNet(Method):
    name = "adaptsegnet"
    title = "AdaptSegNet-style"
    source = True
    target = True
    losses = (SEG_SRC, SEG_TRG, ADV, D2)
    options = ("method.fda", "method.fda_beta", "method.lambda_adv_image")

    def networks(self, num_classes):
        return {"d2": FCDiscriminator(num_classes)}

    def target_loss(self, step, logits, labels):
        adv = L.domain_bce(step.judge_for_g("d2", logits.softmax(1)), L.SOURCE)
        step.record(ADV, adv)
        return self.cfg.method.lambda_adv_image * adv

    def network_loss(self, step, name, pred_src, pred_trg):
        return domain_discriminator_loss(step, name, pred_src.softmax(1), pred_trg.softmax(1))
