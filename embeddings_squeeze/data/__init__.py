"""Oxford-IIIT Pet loading (``oxford_pet``), label mapping (``labels``) and synthetic data (``synthetic``)."""
