"""The code file of eee_ray's logged pyfunc models (MLflow models-from-code): the model is built here, at load
time, from code; its weights come from the model's ``checkpoint`` artifact (see ``eee_ray.serving``)."""

import mlflow

from eee_ray.serving import EcgClassifier

mlflow.models.set_model(EcgClassifier())
