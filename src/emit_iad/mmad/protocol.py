"""MMAD's vocabulary: task type names as MMAD writes them, and question wording in its style."""

from __future__ import annotations

ANOMALY_DETECTION = "Anomaly Detection"
DEFECT_CLASSIFICATION = "Defect Classification"
DEFECT_LOCALIZATION = "Defect Localization"
DEFECT_DESCRIPTION = "Defect Description"
DEFECT_ANALYSIS = "Defect Analysis"
OBJECT_CLASSIFICATION = "Object Classification"
OBJECT_STRUCTURE = "Object Structure"
OBJECT_DETAILS = "Object Details"

QUESTION_TYPES = (
    ANOMALY_DETECTION, DEFECT_CLASSIFICATION, DEFECT_LOCALIZATION, DEFECT_DESCRIPTION,
    DEFECT_ANALYSIS, OBJECT_CLASSIFICATION, OBJECT_STRUCTURE, OBJECT_DETAILS,
)  # fmt: skip
DEFECT_TYPES = QUESTION_TYPES[1:5]
OBJECT_TYPES = QUESTION_TYPES[5:]
# Scored as 7 tasks: Object Structure and Object Details together are "Object Analysis".
OBJECT_ANALYSIS = "Object Analysis"
TASKS = (*QUESTION_TYPES[:6], OBJECT_ANALYSIS)
TASK_OF_TYPE = {t: (OBJECT_ANALYSIS if t in (OBJECT_STRUCTURE, OBJECT_DETAILS) else t)
                for t in QUESTION_TYPES}  # fmt: skip

LETTERS = "ABCDE"

QUESTIONS = {
    ANOMALY_DETECTION: "Is there any defect in the object?",
    DEFECT_CLASSIFICATION: "There is a defect in the object. What is the type of the defect?",
    DEFECT_LOCALIZATION: "There is a defect in the object. Where is the defect?",
    DEFECT_DESCRIPTION: "There is a defect in the object. What does the defect look like?",
    DEFECT_ANALYSIS: "There is a defect in the object. What is the likely effect of the defect?",
    OBJECT_CLASSIFICATION: "What kind of product is in the image?",
    OBJECT_STRUCTURE: "Which of the following describes the object in the image?",
    OBJECT_DETAILS: "Which of the following details can be seen on the object?",
}
# Text-as-query samples (EMIT): the query is a written description, not the image.
TEXT_QUERY_PREFIX = "Following is the description of the query object: "
