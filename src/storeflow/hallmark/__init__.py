"""storeflow.hallmark"""
